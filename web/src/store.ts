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
  /** Events per room, sorted by seq, each seq once. */
  events: Map<string, RoomEvent[]>;
  /** Whether older history exists before the first loaded event. */
  olderExists: Map<string, boolean>;
  deliveries: Map<string, Delivery>;
  notices: Notice[];
  /** Company names by tenant, as their nodes publish them. */
  companies: Map<string, string>;
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

/** Merges events into a room's list: sorted by seq, a seq seen twice kept once. */
export function mergeEvents(roomId: string, incoming: RoomEvent[]) {
  const current = store.state.events.get(roomId) ?? [];
  const bySeq = new Map<bigint, RoomEvent>();
  for (const event of current) bySeq.set(event.seq, event);
  for (const event of incoming) bySeq.set(event.seq, event);
  const merged = [...bySeq.values()].sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
  const events = new Map(store.state.events);
  events.set(roomId, merged);
  store.set({ events });
}

export function tenantOf(memberId: string): string {
  const at = memberId.lastIndexOf("@");
  return at < 0 ? "" : memberId.slice(at + 1);
}
