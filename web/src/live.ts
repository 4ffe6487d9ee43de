// The live stream: one Rooms.Watch per tab. The last seq of every room is
// kept; after a drop the stream is opened again with those cursors, so the
// node replays exactly what followed them (no gap), and an event at or below
// a room's cursor is dropped (no duplicate).
import { Code, ConnectError } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Notice, RoomEvent, WatchEvent, WatchRequestSchema } from "./gen/works/client/v1/client_pb";
import { store } from "./store";

/** Rooms.Watch, as the client or a test gives it. */
export type WatchCall = (
  request: MessageInitShape<typeof WatchRequestSchema>,
  options: { signal: AbortSignal; onHeader: () => void },
) => AsyncIterable<WatchEvent>;

export interface LiveHandlers {
  onEvent: (event: RoomEvent) => void;
  onNotice: (notice: Notice) => void;
  /** The token no longer works: the stream stops. */
  onUnauthenticated: (error: ConnectError) => void;
}

export class LiveStream {
  private readonly cursors = new Map<string, bigint>();
  private abort: AbortController | null = null;
  private stopped = false;
  private retryMs = 100;
  private wake: (() => void) | null = null;

  constructor(
    private readonly watch: WatchCall,
    private readonly handlers: LiveHandlers,
    private readonly maxRetryMs = 10_000,
  ) {}

  /** Records that the app holds a room's events up to seq. */
  advance(roomId: string, seq: bigint) {
    const current = this.cursors.get(roomId);
    if (current === undefined || seq > current) this.cursors.set(roomId, seq);
  }

  cursor(roomId: string): bigint | undefined {
    return this.cursors.get(roomId);
  }

  start() {
    this.stopped = false;
    void this.loop();
  }

  stop() {
    this.stopped = true;
    this.abort?.abort();
    store.set({ connection: "offline" });
  }

  /**
   * Drops the stream and opens it again at once. The app calls it when the
   * browser goes offline or online: a connection cut by the network can
   * stall without an error, and a retry waiting out its back-off should not
   * keep the user waiting once the network is back.
   */
  reconnect() {
    this.retryMs = 100;
    this.abort?.abort();
    this.wake?.();
  }

  private async loop() {
    while (!this.stopped) {
      this.abort = new AbortController();
      store.set({ connection: "connecting" });
      try {
        const cursors = [...this.cursors].map(([roomId, seq]) => ({ roomId, seq }));
        const live = () => {
          this.retryMs = 100;
          if (store.state.connection !== "live") store.set({ connection: "live" });
        };
        const stream = this.watch({ cursors }, { signal: this.abort.signal, onHeader: live });
        for await (const message of stream) {
          live();
          if (message.kind.case === "roomEvent") {
            const event = message.kind.value;
            const cursor = this.cursors.get(event.roomId);
            if (cursor !== undefined && event.seq <= cursor) continue;
            this.cursors.set(event.roomId, event.seq);
            this.handlers.onEvent(event);
          } else if (message.kind.case === "notice") {
            this.handlers.onNotice(message.kind.value);
          }
        }
      } catch (error) {
        if (this.stopped) break;
        if (error instanceof ConnectError && error.code === Code.Unauthenticated) {
          this.stopped = true;
          store.set({ connection: "offline" });
          this.handlers.onUnauthenticated(error);
          break;
        }
      }
      if (this.stopped) break;
      store.set({ connection: "offline" });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.retryMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
      this.retryMs = Math.min(this.retryMs * 2, this.maxRetryMs);
    }
  }
}
