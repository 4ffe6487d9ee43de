// A signed-in session: who we are, the rooms, the live stream, and what the
// live events change.
import { api, attempt, describe, saveToken } from "./api";
import { DeliveryState, type Notice, type RoomEvent } from "./gen/works/client/v1/client_pb";
import { t } from "./i18n";
import { LiveStream } from "./live";
import { mergeEvents, store } from "./store";

let live: LiveStream | null = null;
let openRoom: string | null = null;
let refreshTimer: ReturnType<typeof setTimeout> | null = null;
const deliveryPolls = new Set<string>();

export function liveStream(): LiveStream | null {
  return live;
}

if (typeof window !== "undefined") {
  window.addEventListener("offline", () => live?.reconnect());
  window.addEventListener("online", () => live?.reconnect());
}

export async function signIn(memberId: string, password: string) {
  const response = await api.auth.login({ memberId, password });
  saveToken(response.token);
  await start();
}

export async function start() {
  store.set({ error: null });
  try {
    const me = await api.auth.whoAmI({});
    store.set({ me });
  } catch (error) {
    saveToken(null);
    store.set({ error: describe(error) });
    return;
  }
  live?.stop();
  live = new LiveStream((request, options) => api.rooms.watch(request, options), {
    onEvent,
    onNotice,
    onUnauthenticated: (error) => {
      saveToken(null);
      store.set({ error: describe(error) });
    },
  });
  await refreshRooms(true);
  void refreshCompanies();
  const notices = await attempt(() => api.profiles.listNotices({}));
  if (notices) store.set({ notices: notices.notices });
  live.start();
}

export async function signOut() {
  live?.stop();
  live = null;
  try {
    await api.auth.logout({});
  } catch {
    // The token is forgotten here either way.
  }
  saveToken(null);
  store.set({
    me: null,
    rooms: [],
    events: new Map(),
    olderExists: new Map(),
    deliveries: new Map(),
    notices: [],
    connection: "offline",
  });
  location.hash = "";
}

/**
 * Reloads the room list. Only before the stream first opens (initial) do the
 * rooms' last seqs become cursors: later, events below a fresh last_seq may
 * still be on their way on the open stream, and must not be taken as seen.
 */
export async function refreshRooms(initial = false) {
  const response = await attempt(() => api.rooms.listRooms({}));
  if (!response) return;
  if (initial) for (const room of response.rooms) live?.advance(room.id, room.lastSeq);
  store.set({ rooms: response.rooms });
}

/** Company names by tenant, from contacts and friend requests. */
export async function refreshCompanies() {
  const companies = new Map(store.state.companies);
  let contactNames = store.state.contactNames;
  try {
    const [contacts, requests] = await Promise.all([
      api.contacts.listContacts({}),
      api.contacts.listFriendRequests({}),
    ]);
    for (const request of requests.requests) {
      if (request.tenant && request.company) companies.set(request.tenant, request.company);
    }
    contactNames = new Map();
    for (const contact of contacts.contacts) {
      const name = ownName(contact.fieldsJson) || contact.displayName;
      if (name) contactNames.set(contact.userId, name);
      if (contact.tenant && contact.status && contact.status !== "unknown") {
        companies.set(contact.tenant, contact.status);
      }
    }
  } catch {
    // Members without external messaging have no contacts to name.
  }
  store.set({ companies, contactNames });
}

/** The name the member gave a contact in their own fields, if any. */
function ownName(fieldsJson: string): string {
  try {
    const fields: unknown = JSON.parse(fieldsJson || "{}");
    if (typeof fields === "object" && fields !== null && "name" in fields) {
      const name = (fields as { name: unknown }).name;
      return typeof name === "string" ? name.trim() : "";
    }
  } catch {
    // Not JSON: no own name.
  }
  return "";
}

function refreshRoomsSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    void refreshRooms();
  }, 200);
}

export function setOpenRoom(roomId: string | null) {
  openRoom = roomId;
  if (roomId) void markRead(roomId);
}

export async function markRead(roomId: string) {
  const events = store.state.events.get(roomId) ?? [];
  const last = events.findLast((e) => e.seq > 0n);
  if (!last) return;
  const room = store.state.rooms.find((r) => r.id === roomId);
  if (room && room.lastReadSeq >= last.seq && room.unread === 0n) return;
  const response = await attempt(() => api.rooms.markRead({ roomId, seq: last.seq }));
  if (!response) return;
  store.set({
    rooms: store.state.rooms.map((r) =>
      r.id === roomId ? { ...r, lastReadSeq: response.lastReadSeq, unread: response.unread } : r,
    ),
  });
}

function onEvent(event: RoomEvent) {
  mergeEvents(event.roomId, [event]);
  const mine = event.sender === store.state.me?.id;
  const visible = openRoom === event.roomId && !document.hidden;
  const room = store.state.rooms.find((r) => r.id === event.roomId);
  if (!room || (event.body.case !== "text" && event.body.case !== "sticker" && event.body.case !== "attachment")) {
    refreshRoomsSoon();
  }
  if (room) {
    store.set({
      rooms: [
        {
          ...room,
          lastSeq: event.seq > room.lastSeq ? event.seq : room.lastSeq,
          lastEventAtMs: event.atMs,
          unread: mine || visible ? room.unread : room.unread + 1n,
        },
        ...store.state.rooms.filter((r) => r.id !== room.id),
      ],
    });
  }
  if (visible) void markRead(event.roomId);
  if (!mine && document.hidden) notify(event);
}

function onNotice(notice: Notice) {
  store.set({ notices: [notice, ...store.state.notices.filter((n) => n.id !== notice.id)] });
  refreshRoomsSoon();
  void refreshCompanies();
}

export function notificationsOn(): boolean {
  return typeof Notification !== "undefined" && Notification.permission === "granted"
    && localStorage.getItem("works.notify") === "on";
}

export async function enableNotifications(on: boolean) {
  if (!on) {
    localStorage.setItem("works.notify", "off");
    store.set({});
    return;
  }
  if (typeof Notification === "undefined") return;
  const permission = await Notification.requestPermission();
  localStorage.setItem("works.notify", permission === "granted" ? "on" : "off");
  store.set({});
}

function notify(event: RoomEvent) {
  if (!notificationsOn()) return;
  const body =
    event.body.case === "text"
      ? event.body.value.text
      : event.body.case === "sticker"
        ? `${t("Sticker")}: ${event.body.value.name}`
        : event.body.case === "attachment"
          ? event.body.value.name
          : "";
  if (!body) return;
  const room = store.state.rooms.find((r) => r.id === event.roomId);
  new Notification(`${t("New message")} · ${room?.name || event.sender}`, { body, tag: event.roomId });
}

/** Follows a sent message's delivery until it is delivered or refused. */
export function followDelivery(roomId: string, eventId: string) {
  if (deliveryPolls.has(eventId)) return;
  deliveryPolls.add(eventId);
  let wait = 500;
  const poll = async () => {
    try {
      const delivery = await api.rooms.getDelivery({ roomId, eventId });
      const deliveries = new Map(store.state.deliveries);
      deliveries.set(eventId, delivery);
      store.set({ deliveries });
      if (delivery.state !== DeliveryState.QUEUED || !live) {
        deliveryPolls.delete(eventId);
        return;
      }
    } catch {
      deliveryPolls.delete(eventId);
      return;
    }
    wait = Math.min(wait * 2, 5000);
    setTimeout(poll, wait);
  };
  void poll();
}
