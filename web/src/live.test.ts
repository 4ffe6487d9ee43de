import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, test } from "vitest";
import {
  RoomEventSchema,
  TextMessageSchema,
  WatchEventSchema,
  type RoomEvent,
  type WatchEvent,
} from "./gen/works/client/v1/client_pb";
import { LiveStream, type WatchCall } from "./live";

function event(roomId: string, seq: number): WatchEvent {
  return create(WatchEventSchema, {
    kind: {
      case: "roomEvent",
      value: create(RoomEventSchema, {
        roomId,
        seq: BigInt(seq),
        eventId: `${roomId}-${seq}`,
        body: { case: "text", value: create(TextMessageSchema, { text: `m${seq}` }) },
      }),
    },
  });
}

/** A Watch that plays one script per call; a script ending in "drop" fails. */
function scripted(scripts: (WatchEvent | "drop" | "unauthenticated")[][]) {
  const requests: { roomId: string; seq: bigint }[][] = [];
  const watch: WatchCall = (request, options) => {
    requests.push((request.cursors ?? []).map((c) => ({ roomId: c.roomId ?? "", seq: c.seq ?? 0n })));
    const script = scripts.shift() ?? [];
    return (async function* () {
      options.onHeader();
      for (const step of script) {
        if (step === "drop") throw new ConnectError("connection reset", Code.Unavailable);
        if (step === "unauthenticated") throw new ConnectError("token revoked", Code.Unauthenticated);
        yield step;
      }
      await new Promise<void>((resolve) => options.signal.addEventListener("abort", () => resolve()));
      throw new ConnectError("aborted", Code.Canceled);
    })();
  };
  return { watch, requests };
}

describe("the live stream", () => {
  test("resumes after a drop from each room's last seq, with no gap or duplicate", async () => {
    const { watch, requests } = scripted([
      [event("a", 3), event("b", 1), event("a", 4), "drop"],
      // The node replays after the cursors; one event it had already sent
      // slips in again and must be dropped.
      [event("a", 4), event("a", 5), event("b", 2), "drop"],
      [event("b", 3)],
    ]);
    const seen: RoomEvent[] = [];
    const live = new LiveStream(watch, { onEvent: (e) => seen.push(e), onNotice: () => {}, onUnauthenticated: () => {} }, 1);
    live.advance("a", 2n);
    live.start();
    await expect.poll(() => seen.length).toBe(6);
    live.stop();
    expect(seen.map((e) => `${e.roomId}${e.seq}`)).toEqual(["a3", "b1", "a4", "a5", "b2", "b3"]);
    expect(requests[0]).toEqual([{ roomId: "a", seq: 2n }]);
    expect(requests[1]).toEqual([
      { roomId: "a", seq: 4n },
      { roomId: "b", seq: 1n },
    ]);
    expect(requests[2]).toEqual([
      { roomId: "a", seq: 5n },
      { roomId: "b", seq: 2n },
    ]);
  });

  test("a cursor never moves backwards", () => {
    const live = new LiveStream(scripted([]).watch, { onEvent: () => {}, onNotice: () => {}, onUnauthenticated: () => {} });
    live.advance("a", 7n);
    live.advance("a", 5n);
    expect(live.cursor("a")).toBe(7n);
  });

  test("stops when the token is refused", async () => {
    const { watch, requests } = scripted([["unauthenticated"], []]);
    let refused = false;
    const live = new LiveStream(watch, { onEvent: () => {}, onNotice: () => {}, onUnauthenticated: () => (refused = true) }, 1);
    live.start();
    await expect.poll(() => refused).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(requests.length).toBe(1);
  });
});
