// One app-wide state object; components re-render when it changes.
import { useEffect, useState } from "preact/hooks";
import type { Delivery, Member, Notice, Room, RoomEvent } from "./gen/works/client/v1/client_pb";
import type { Lang } from "./i18n";

export type Connection = "offline" | "connecting" | "live";

export interface State {
  lang: Lang;
  token: string | null;
  me: Member | null;
  connection: Connection;
  rooms: Room[];
  /** Events per room, sorted by seq, each event once. */
  events: Map<string, RoomEvent[]>;
  /** Whether older history exists before the first loaded event. */
  olderExists: Map<string, boolean>;
  deliveries: Map<string, Delivery>;
  notices: Notice[];
  /** Company names by tenant, as their nodes publish them. */
  companies: Map<string, string>;
  /** What the member calls their contacts (their own name, else the synced one), by user id. */
  contactNames: Map<string, string>;
  error: string | null;
}

type Listener = () => void;

class Store {
  state: State = {
    lang: "en",
    token: typeof sessionStorage === "undefined" ? null : sessionStorage.getItem("works.token"),
    me: null,
    connection: "offline",
    rooms: [],
    events: new Map(),
    olderExists: new Map(),
    deliveries: new Map(),
    notices: [],
    companies: new Map(),
    contactNames: new Map(),
    error: null,
  };
  private listeners = new Set<Listener>();

  set(patch: Partial<State>) {
    this.state = { ...this.state, ...patch };
    for (const listener of this.listeners) listener();
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

export const store = new Store();

export function useStore(): State {
  const [, setTick] = useState(0);
  useEffect(() => store.subscribe(() => setTick((n) => n + 1)), []);
  return store.state;
}

/**
 * Merges events into a room's list, each event once (by id), sorted by seq.
 * A message sent into a room another node hosts comes back from SendMessage
 * before the host has ordered it (seq 0): it stays last until the host's copy,
 * with the same id and its seq, replaces it.
 */
export function mergeEvents(roomId: string, incoming: RoomEvent[]) {
  const current = store.state.events.get(roomId) ?? [];
  const byId = new Map<string, RoomEvent>();
  for (const event of current) byId.set(event.eventId, event);
  for (const event of incoming) {
    const known = byId.get(event.eventId);
    if (known && known.seq !== 0n && event.seq === 0n) continue;
    byId.set(event.eventId, event);
  }
  const order = (e: RoomEvent) => (e.seq === 0n ? BigInt(Number.MAX_SAFE_INTEGER) : e.seq);
  const merged = [...byId.values()].sort((a, b) => {
    const x = order(a);
    const y = order(b);
    return x < y ? -1 : x > y ? 1 : Number(a.atMs - b.atMs);
  });
  const events = new Map(store.state.events);
  events.set(roomId, merged);
  store.set({ events });
}

/** Where LINE users live in rooms: `u<LINE user id>@line.invalid`. */
export const LINE_TENANT = "line.invalid";

export function isLineUser(memberId: string): boolean {
  return tenantOf(memberId) === LINE_TENANT;
}

/** A LINE sticker as the product addresses it: `line:PACKAGE_ID:STICKER_ID`. */
export function lineSticker(name: string): { packageId: string; stickerId: string } | null {
  const match = /^line:(\d+):(\d+)$/.exec(name);
  return match ? { packageId: match[1]!, stickerId: match[2]! } : null;
}

export function tenantOf(memberId: string): string {
  const at = memberId.lastIndexOf("@");
  return at < 0 ? "" : memberId.slice(at + 1);
}
