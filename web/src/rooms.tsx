import { useEffect, useRef, useState } from "preact/hooks";
import { api, attempt, describe, newKey } from "./api";
import {
  DeliveryState,
  RoomKind,
  type Delivery,
  type Room,
  type RoomEvent,
} from "./gen/works/client/v1/client_pb";
import { t } from "./i18n";
import { go } from "./route";
import { followDelivery, refreshRooms, setOpenRoom } from "./session";
import { LINE_TENANT, isLineUser, lineSticker, mergeEvents, store, tenantOf, useStore, type State } from "./store";
import { uploadAttachment } from "./upload";
import { Field, saveBlob, time } from "./ui";

const PAGE = 50;

export const STICKERS: Record<string, string> = {
  ok: "👌",
  thanks: "🙏",
  smile: "😊",
  laugh: "😂",
  sorry: "🙇",
  party: "🎉",
  "thumbs-up": "👍",
  heart: "❤️",
};

/**
 * LINE stickers an account may send (from LINE's published list), offered in
 * rooms with LINE users, which take no others.
 */
export const LINE_STICKERS: string[] = [1988, 1989, 1990, 1991, 1992, 1993, 1994, 1995].map((id) => `line:446:${id}`);

/** "LINE sticker 446/1988" for `line:446:1988`; null for the app's own stickers. */
export function lineStickerLabel(name: string): string | null {
  const sticker = lineSticker(name);
  return sticker ? `${t("LINE sticker")} ${sticker.packageId}/${sticker.stickerId}` : null;
}

/**
 * How a room member is shown: a LINE user by the member's name for them as a
 * contact (their LINE name unless the member gave one), else as "LINE user";
 * everyone else by id.
 */
export function memberName(member: string, state: State): string {
  if (!isLineUser(member)) return member;
  return state.contactNames.get(member) || t("LINE user");
}

/** The picker's stickers for a room: [name, what the button shows, its label]. */
function stickerChoices(room: Room): [string, string, string][] {
  if (room.line) return LINE_STICKERS.map((name) => [name, lineSticker(name)?.stickerId ?? name, lineStickerLabel(name) ?? name]);
  return Object.entries(STICKERS).map(([name, glyph]) => [name, glyph, `${t("Sticker")} ${name}`]);
}

function splitIds(text: string): string[] {
  return text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

export function roomTitle(room: Room, state: State): string {
  if (room.name) return room.name;
  const others = room.members.filter((m) => m !== state.me?.id);
  return others.map((m) => memberName(m, state)).join(", ") || room.id;
}

/** "External · Globex (globex.example) · host acme.example" for rooms with other companies. */
export function externalLabel(room: Room, state: State): string | null {
  if (!room.external) return null;
  const mine = tenantOf(state.me?.id ?? "");
  const tenants = [...new Set(room.members.map(tenantOf))].filter((x) => x && x !== mine && x !== LINE_TENANT);
  if (tenants.length === 0) return null;
  const names = tenants.map((tenant) => {
    const company = state.companies.get(tenant);
    return company ? `${company} (${tenant})` : tenant;
  });
  return `${t("External")} · ${names.join(", ")} · ${t("Host")} ${room.host}`;
}

export function RoomsView(props: { roomId?: string }) {
  const state = useStore();
  const [creating, setCreating] = useState(false);
  const room = state.rooms.find((r) => r.id === props.roomId);
  return (
    <div class={props.roomId ? "rooms has-room" : "rooms"}>
      <aside class="room-list" aria-label={t("Messages")}>
        <div class="row">
          <h2>{t("Messages")}</h2>
          <button type="button" onClick={() => setCreating(true)} aria-label={t("New room")}>
            {t("New")}
          </button>
        </div>
        {creating && <NewRoom onDone={() => setCreating(false)} />}
        {state.rooms.length === 0 && <p class="muted">{t("No rooms yet")}</p>}
        <ul>
          {state.rooms.map((r) => {
            const external = externalLabel(r, state);
            return (
              <li key={r.id}>
                <a
                  href={`#/rooms/${encodeURIComponent(r.id)}`}
                  class={r.id === props.roomId ? "room current" : "room"}
                  aria-current={r.id === props.roomId ? "true" : undefined}
                  data-room={r.id}
                >
                  <span class="room-name">
                    {r.external && <span class="badge external" aria-hidden="true">⇄</span>}
                    {r.line && <span class="badge line" title={t("Chat with LINE users")}>LINE</span>}
                    {roomTitle(r, state)}
                  </span>
                  {external && <span class="room-external">{external}</span>}
                  {r.unread > 0n && (
                    <span class="unread" aria-label={`${r.unread} ${t("unread")}`}>
                      {String(r.unread)}
                    </span>
                  )}
                </a>
              </li>
            );
          })}
        </ul>
      </aside>
      {room ? (
        <RoomPane key={room.id} room={room} />
      ) : (
        <section class="room-pane empty">
          <p class="muted">{t("Choose a room")}</p>
        </section>
      )}
    </div>
  );
}

function NewRoom(props: { onDone: () => void }) {
  const [kind, setKind] = useState<RoomKind>(RoomKind.DIRECT);
  const [members, setMembers] = useState("");
  const [name, setName] = useState("");
  const submit = async (e: Event) => {
    e.preventDefault();
    const room = await attempt(() =>
      api.rooms.createRoom({ kind, name: kind === RoomKind.GROUP ? name : "", members: splitIds(members) }),
    );
    if (!room) return;
    await refreshRooms();
    props.onDone();
    go("rooms", room.id);
  };
  return (
    <form class="card" onSubmit={submit} aria-label={t("New room")}>
      <fieldset>
        <legend>{t("New room")}</legend>
        <label class="check">
          <input type="radio" name="kind" checked={kind === RoomKind.DIRECT} onChange={() => setKind(RoomKind.DIRECT)} />
          <span>{t("1:1")}</span>
        </label>
        <label class="check">
          <input type="radio" name="kind" checked={kind === RoomKind.GROUP} onChange={() => setKind(RoomKind.GROUP)} />
          <span>{t("Group")}</span>
        </label>
      </fieldset>
      {kind === RoomKind.GROUP && <Field label={t("Room name")} value={name} onInput={setName} />}
      <Field label={t("Member IDs")} value={members} onInput={setMembers} placeholder="carol@globex.example" required />
      <div class="row">
        <button type="submit">{t("Create")}</button>
        <button type="button" onClick={props.onDone}>
          {t("Cancel")}
        </button>
      </div>
    </form>
  );
}

function deliveryLabel(delivery: Delivery | undefined): string {
  if (!delivery) return t("sending");
  switch (delivery.state) {
    case DeliveryState.STORED:
      return t("stored");
    case DeliveryState.QUEUED: {
      const waiting = delivery.peers
        .filter((p) => p.state !== DeliveryState.DELIVERED)
        .map((p) => (p.tenant === LINE_TENANT ? "LINE" : p.tenant));
      // Every node named has it: the room's host has yet to say how the
      // others took it.
      if (waiting.length === 0) return t("waiting for the room's host");
      return `${t("queued for")} ${waiting.join(", ")}`;
    }
    case DeliveryState.DELIVERED:
      return t("delivered");
    case DeliveryState.REFUSED: {
      const reasons = [delivery.reason, ...delivery.peers.map((p) => p.reason)].filter(Boolean);
      return `${t("refused")}: ${[...new Set(reasons)].join("; ")}`;
    }
    default:
      return "";
  }
}

function systemText(event: RoomEvent, state: State): string | null {
  const body = event.body;
  const name = (member: string) => memberName(member, state);
  switch (body.case) {
    case "created":
      return `${name(event.sender)} ${t("created the room")}`;
    case "joined":
      return `${body.value.members.map(name).join(", ")} ${t("joined")}`;
    case "left":
      return `${name(event.sender)} ${t("left")}${body.value.newMaster ? ` · ${t("Group master")}: ${name(body.value.newMaster)}` : ""}`;
    case "removed":
      return `${name(event.sender)} ${t("removed")} ${name(body.value.member)}`;
    case "renamed":
      return `${name(event.sender)} ${t("renamed the room to")} ${body.value.name}`;
    case "unknown":
      return `${name(event.sender)} ${t("became unknown")}`;
    case "unsent":
      return `${name(event.sender)}: ${t("message taken back")}`;
    default:
      return null;
  }
}

async function download(attachmentId: string, fallbackName: string) {
  const parts: Uint8Array[] = [];
  let name = fallbackName;
  let type = "application/octet-stream";
  try {
    for await (const chunk of api.rooms.downloadAttachment({ attachmentId })) {
      if (chunk.attachment) {
        name = chunk.attachment.name || name;
        type = chunk.attachment.contentType || type;
      }
      if (chunk.data.length) parts.push(chunk.data);
    }
    saveBlob(new Blob(parts as BlobPart[], { type }), name);
  } catch (error) {
    store.set({ error: describe(error) });
  }
}

function EventItem(props: { event: RoomEvent; mine: boolean; delivery?: Delivery; state: State }) {
  const { event, mine, state } = props;
  const system = systemText(event, state);
  useEffect(() => {
    if (mine && !system && props.delivery?.state !== DeliveryState.DELIVERED) {
      followDelivery(event.roomId, event.eventId);
    }
  }, [event.eventId]);
  if (system !== null) {
    return (
      <li class="event system" data-seq={String(event.seq)} data-kind={event.body.case}>
        {system}
      </li>
    );
  }
  const body = event.body;
  return (
    <li class={mine ? "event mine" : "event"} data-seq={String(event.seq)} data-kind={body.case} data-event={event.eventId}>
      <div class="meta">
        <span class="sender" title={event.sender}>
          {memberName(event.sender, state)}
        </span>{" "}
        <time>{time(event.atMs)}</time>
      </div>
      {body.case === "text" && <p class="text">{body.value.text}</p>}
      {body.case === "sticker" &&
        (lineStickerLabel(body.value.name) ? (
          <p class="sticker line-sticker" data-sticker={body.value.name}>
            {lineStickerLabel(body.value.name)}
          </p>
        ) : (
          <p class="sticker" role="img" aria-label={`${t("Sticker")} ${body.value.name}`}>
            {STICKERS[body.value.name] ?? body.value.name}
          </p>
        ))}
      {body.case === "attachment" && (
        <p class="file">
          <span>
            📎 {body.value.name} ({String(body.value.size)} B)
          </span>{" "}
          <button type="button" onClick={() => download(body.value.id, body.value.name)}>
            {t("Download")} {body.value.name}
          </button>
        </p>
      )}
      {mine && (
        <p class="delivery" data-delivery={props.delivery ? DeliveryState[props.delivery.state] : "SENDING"}>
          {deliveryLabel(props.delivery)}
        </p>
      )}
    </li>
  );
}

function RoomPane(props: { room: Room }) {
  const state = useStore();
  const { room } = props;
  const events = state.events.get(room.id) ?? [];
  const older = state.olderExists.get(room.id);
  const [showInfo, setShowInfo] = useState(false);
  const list = useRef<HTMLOListElement>(null);

  useEffect(() => {
    setOpenRoom(room.id);
    void (async () => {
      const page = await attempt(() => api.rooms.history({ roomId: room.id, limit: PAGE }));
      if (!page) return;
      mergeEvents(room.id, page.events);
      const olderExists = new Map(store.state.olderExists);
      olderExists.set(room.id, page.hasMore);
      store.set({ olderExists });
      setOpenRoom(room.id);
    })();
    return () => setOpenRoom(null);
  }, [room.id]);

  const last = events[events.length - 1];
  useEffect(() => {
    list.current?.lastElementChild?.scrollIntoView({ block: "end" });
  }, [last?.seq]);

  const loadOlder = async () => {
    const first = events[0];
    if (!first) return;
    const page = await attempt(() => api.rooms.history({ roomId: room.id, beforeSeq: first.seq, limit: PAGE }));
    if (!page) return;
    mergeEvents(room.id, page.events);
    const olderExists = new Map(store.state.olderExists);
    olderExists.set(room.id, page.hasMore);
    store.set({ olderExists });
  };

  const external = externalLabel(room, state);
  return (
    <section class="room-pane" aria-label={roomTitle(room, state)}>
      <header class="room-head">
        <a href="#/rooms" class="back" aria-label={t("Messages")}>
          ‹
        </a>
        <div>
          <h2>{roomTitle(room, state)}</h2>
          {external && <p class="room-external">{external}</p>}
        </div>
        <button type="button" aria-expanded={showInfo} onClick={() => setShowInfo(!showInfo)}>
          {t("Info")}
        </button>
      </header>
      {showInfo && <RoomInfo room={room} />}
      {older && (
        <button type="button" class="older" onClick={loadOlder}>
          {t("Older messages")}
        </button>
      )}
      <ol class="events" ref={list} aria-label={t("Messages")} aria-live="polite">
        {events.map((event) => (
          <EventItem
            key={event.eventId}
            event={event}
            mine={event.sender === state.me?.id}
            delivery={state.deliveries.get(event.eventId)}
            state={state}
          />
        ))}
      </ol>
      <Composer room={room} />
    </section>
  );
}

async function send(roomId: string, content: { text?: string; sticker?: string; attachmentId?: string }) {
  const response = await attempt(() =>
    api.rooms.sendMessage({
      roomId,
      idempotencyKey: newKey(),
      text: content.text ?? "",
      sticker: content.sticker ?? "",
      attachmentId: content.attachmentId ?? "",
    }),
  );
  if (!response?.event) return false;
  mergeEvents(roomId, [response.event]);
  if (response.delivery) {
    const deliveries = new Map(store.state.deliveries);
    deliveries.set(response.event.eventId, response.delivery);
    store.set({ deliveries });
    if (response.delivery.state === DeliveryState.QUEUED) {
      followDelivery(roomId, response.event.eventId);
    }
  }
  return true;
}

function Composer(props: { room: Room }) {
  const [text, setText] = useState("");
  const [stickers, setStickers] = useState(false);
  const [progress, setProgress] = useState<string | null>(null);
  const area = useRef<HTMLTextAreaElement>(null);
  const submit = async (e?: Event) => {
    e?.preventDefault();
    // The field's own value: a key press can come before the render that
    // would give the handler the latest state.
    const field = area.current;
    const message = (field?.value ?? text).trim();
    if (!message) return;
    // Cleared at once, the field itself too: setting the state to "" when it
    // already is "" renders nothing, which would leave the sent text in the
    // field to be sent again. What is typed while this one is on its way
    // stays; the text is given back only if the send failed and nothing new
    // was typed.
    if (field) field.value = "";
    setText("");
    if (!(await send(props.room.id, { text: message }))) {
      setText((current) => (current === "" ? message : current));
    }
  };
  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      void submit();
    }
  };
  const onFile = async (e: Event) => {
    const input = e.target as HTMLInputElement;
    const file = input.files?.[0];
    input.value = "";
    if (!file) return;
    setProgress(`${t("Uploading")} ${file.name}`);
    try {
      const attachment = await uploadAttachment(props.room.id, file, (sent) =>
        setProgress(`${t("Uploading")} ${file.name} ${Math.floor((sent * 100) / Math.max(file.size, 1))}%`),
      );
      await send(props.room.id, { attachmentId: attachment.id });
    } catch (error) {
      store.set({ error: describe(error) });
    } finally {
      setProgress(null);
    }
  };
  return (
    <form class="composer" onSubmit={submit} aria-label={t("Message")}>
      {stickers && (
        <div class="stickers" role="group" aria-label={t("Stickers")}>
          {stickerChoices(props.room).map(([name, face, label]) => (
            <button
              type="button"
              key={name}
              aria-label={label}
              onClick={async () => {
                setStickers(false);
                await send(props.room.id, { sticker: name });
              }}
            >
              {face}
            </button>
          ))}
        </div>
      )}
      {progress && <p role="status">{progress}</p>}
      <div class="row">
        <button type="button" aria-expanded={stickers} aria-label={t("Stickers")} onClick={() => setStickers(!stickers)}>
          ☺
        </button>
        <label class="attach">
          <span class="visually-hidden">{t("Attach file")}</span>
          <span aria-hidden="true">📎</span>
          <input type="file" aria-label={t("Attach file")} onChange={onFile} />
        </label>
        <label class="grow">
          <span class="visually-hidden">{t("Message")}</span>
          <textarea
            ref={area}
            aria-label={t("Message")}
            rows={1}
            value={text}
            onInput={(e) => setText((e.target as HTMLTextAreaElement).value)}
            onKeyDown={onKeyDown}
          />
        </label>
        <button type="submit">{t("Send")}</button>
      </div>
    </form>
  );
}

function RoomInfo(props: { room: Room }) {
  const state = useStore();
  const { room } = props;
  const [invite, setInvite] = useState("");
  const [name, setName] = useState(room.name);
  const isGroup = room.kind === RoomKind.GROUP;
  const isMaster = room.master === state.me?.id;
  const update = (next: Room | undefined) => {
    if (next) store.set({ rooms: store.state.rooms.map((r) => (r.id === next.id ? next : r)) });
  };
  return (
    <div class="card room-info">
      <h3>{t("Members")}</h3>
      <ul>
        {room.members.map((member) => (
          <li key={member} data-member={member}>
            {isLineUser(member) ? (
              <>
                <span class="badge line">LINE</span> <span title={member}>{memberName(member, state)}</span>
              </>
            ) : (
              member
            )}
            {member === room.master && ` · ${t("Group master")}`}
            {isGroup && isMaster && member !== state.me?.id && (
              <button
                type="button"
                aria-label={`${t("Remove")} ${member}`}
                onClick={async () => update(await attempt(() => api.rooms.removeMember({ roomId: room.id, memberId: member })))}
              >
                {t("Remove")}
              </button>
            )}
          </li>
        ))}
      </ul>
      {isGroup && isMaster && (
        <form
          onSubmit={async (e) => {
            e.preventDefault();
            update(await attempt(() => api.rooms.inviteMembers({ roomId: room.id, members: splitIds(invite) })));
            setInvite("");
          }}
        >
          <Field label={t("Invite")} value={invite} onInput={setInvite} placeholder="bob@acme.example" />
          <button type="submit">{t("Invite")}</button>
        </form>
      )}
      {isGroup && (
        <form
          onSubmit={async (e) => {
            e.preventDefault();
            update(await attempt(() => api.rooms.renameRoom({ roomId: room.id, name })));
          }}
        >
          <Field label={t("Room name")} value={name} onInput={setName} />
          <button type="submit">{t("Rename")}</button>
        </form>
      )}
      {(
        <button
          type="button"
          onClick={async () => {
            if (await attempt(() => api.rooms.leaveRoom({ roomId: room.id }))) {
              await refreshRooms();
              go("rooms");
            }
          }}
        >
          {t("Leave")}
        </button>
      )}
    </div>
  );
}
