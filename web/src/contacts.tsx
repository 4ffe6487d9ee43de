import { useEffect, useState } from "preact/hooks";
import { api, attempt } from "./api";
import {
  RoomKind,
  type ExternalContact,
  type ExternalProfile,
  type FriendRequest,
  type InvitationLink,
} from "./gen/works/client/v1/client_pb";
import { t } from "./i18n";
import { go } from "./route";
import { refreshCompanies, refreshRooms } from "./session";
import { Avatar, CopyButton, Field, Section, time, useBlobUrl } from "./ui";

interface OwnFields {
  name?: string;
  company?: string;
  team?: string;
  position?: string;
  memo?: string;
  phones?: string[];
  emails?: string[];
}

function ownFields(contact: ExternalContact): OwnFields {
  try {
    const parsed: unknown = JSON.parse(contact.fieldsJson || "{}");
    return typeof parsed === "object" && parsed !== null ? (parsed as OwnFields) : {};
  } catch {
    return {};
  }
}

export function ContactsView() {
  const [trash, setTrash] = useState(false);
  const [contacts, setContacts] = useState<ExternalContact[]>([]);
  const [requests, setRequests] = useState<FriendRequest[]>([]);
  const reload = async () => {
    const [list, reqs] = await Promise.all([
      attempt(() => api.contacts.listContacts({ trash })),
      attempt(() => api.contacts.listFriendRequests({})),
    ]);
    if (list) setContacts(list.contacts);
    if (reqs) setRequests(reqs.requests);
    void refreshCompanies();
  };
  useEffect(() => {
    void reload();
  }, [trash]);
  return (
    <div class="columns">
      <div>
        <AddContact onAdded={reload} />
        <Invitation />
        <Requests requests={requests} onChange={reload} />
      </div>
      <Section title={trash ? t("Trash") : t("External contacts")}>
        <div class="row">
          <button type="button" aria-pressed={!trash} onClick={() => setTrash(false)}>
            {t("External contacts")}
          </button>
          <button type="button" aria-pressed={trash} onClick={() => setTrash(true)}>
            {t("Trash")}
          </button>
        </div>
        {contacts.length === 0 && <p class="muted">{t("No contacts")}</p>}
        <ul class="contacts">
          {contacts.map((c) => (
            <ContactItem key={c.userId} contact={c} onChange={reload} />
          ))}
        </ul>
      </Section>
    </div>
  );
}

function ContactItem(props: { contact: ExternalContact; onChange: () => void }) {
  const c = props.contact;
  const [editing, setEditing] = useState(false);
  const fields = ownFields(c);
  const act = async (call: () => Promise<unknown>) => {
    if ((await attempt(call)) !== undefined) props.onChange();
  };
  const message = async () => {
    const room = await attempt(() => api.rooms.createRoom({ kind: RoomKind.DIRECT, members: [c.userId] }));
    if (!room) return;
    await refreshRooms();
    go("rooms", room.id);
  };
  return (
    <li class="contact" data-user={c.userId}>
      <div class="row">
        <Avatar photo={c.photo} type={c.photoContentType} name={c.displayName} />
        <div class="grow">
          <strong>{fields.name || c.displayName}</strong>
          <div class="muted">
            {c.userId} · <span class="status">{c.status}</span> ({c.tenant})
          </div>
          {fields.name && <div class="muted">{t("Display name")}: {c.displayName}</div>}
          {(fields.company || fields.team || fields.position) && (
            <div>{[fields.company, fields.team, fields.position].filter(Boolean).join(" · ")}</div>
          )}
          {fields.memo && <div class="memo">{fields.memo}</div>}
        </div>
      </div>
      <div class="row wrap">
        {c.trashed ? (
          <button type="button" onClick={() => act(() => api.contacts.restoreContact({ userId: c.userId }))}>
            {t("Restore")}
          </button>
        ) : (
          <>
            <button type="button" onClick={message} aria-label={`${t("Message")} ${c.userId}`}>
              {t("Message")}
            </button>
            <button type="button" aria-expanded={editing} onClick={() => setEditing(!editing)}>
              {t("Edit")}
            </button>
            <button type="button" onClick={() => act(() => api.contacts.deleteContact({ userId: c.userId }))}>
              {t("Delete")}
            </button>
          </>
        )}
        <button type="button" onClick={() => act(() => api.contacts.blockUser({ userId: c.userId }))}>
          {t("Block")}
        </button>
        <button type="button" onClick={() => act(() => api.contacts.unblockUser({ userId: c.userId }))}>
          {t("Unblock")}
        </button>
      </div>
      {editing && (
        <EditContact
          contact={c}
          fields={fields}
          onDone={() => {
            setEditing(false);
            props.onChange();
          }}
        />
      )}
    </li>
  );
}

function EditContact(props: { contact: ExternalContact; fields: OwnFields; onDone: () => void }) {
  const f = props.fields;
  const [name, setName] = useState(f.name ?? "");
  const [company, setCompany] = useState(f.company ?? "");
  const [team, setTeam] = useState(f.team ?? "");
  const [position, setPosition] = useState(f.position ?? "");
  const [phones, setPhones] = useState((f.phones ?? []).join(", "));
  const [emails, setEmails] = useState((f.emails ?? []).join(", "));
  const [memo, setMemo] = useState(f.memo ?? "");
  const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);
  const submit = async (e: Event) => {
    e.preventDefault();
    const saved = await attempt(() =>
      api.contacts.editContact({
        userId: props.contact.userId,
        name,
        company,
        team,
        position,
        memo,
        phones: list(phones),
        replacePhones: true,
        emails: list(emails),
        replaceEmails: true,
      }),
    );
    if (saved) props.onDone();
  };
  return (
    <form class="card" onSubmit={submit} aria-label={t("Edit")}>
      <p class="muted">
        {t("Synced from their company")}: {props.contact.displayName} · {props.contact.status}
      </p>
      <h3>{t("Your fields")}</h3>
      <Field label={t("Name")} value={name} onInput={setName} />
      <Field label={t("Company")} value={company} onInput={setCompany} />
      <Field label={t("Team")} value={team} onInput={setTeam} />
      <Field label={t("Position")} value={position} onInput={setPosition} />
      <Field label={t("Phones")} value={phones} onInput={setPhones} />
      <Field label={t("Emails")} value={emails} onInput={setEmails} />
      <Field label={t("Memo")} value={memo} onInput={setMemo} />
      <div class="row">
        <button type="submit">{t("Save")}</button>
        <button type="button" onClick={props.onDone}>
          {t("Cancel")}
        </button>
      </div>
    </form>
  );
}

function AddContact(props: { onAdded: () => void }) {
  const [id, setId] = useState("");
  const [found, setFound] = useState<ExternalProfile | null>(null);
  const [link, setLink] = useState("");
  const [sent, setSent] = useState(false);
  return (
    <Section title={t("Add contact")}>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setSent(false);
          setFound((await attempt(() => api.contacts.findUser({ userId: id.trim() }))) ?? null);
        }}
      >
        <Field label={t("Find by ID")} value={id} onInput={setId} placeholder="carol@globex.example" />
        <button type="submit">{t("Find")}</button>
      </form>
      {found && (
        <div class="row found">
          <Avatar photo={found.photo} type={found.photoContentType} name={found.displayName} />
          <div class="grow">
            <strong>{found.displayName}</strong>
            <div class="muted">
              {found.userId} · {found.company} ({found.tenant})
            </div>
          </div>
          <button
            type="button"
            disabled={sent}
            onClick={async () => {
              if (await attempt(() => api.contacts.sendFriendRequest({ userId: found.userId }))) {
                setSent(true);
                props.onAdded();
              }
            }}
          >
            {t("Send friend request")}
          </button>
        </div>
      )}
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          if (await attempt(() => api.contacts.redeemInvitation({ link: link.trim() }))) {
            setLink("");
            await refreshRooms();
            props.onAdded();
          }
        }}
      >
        <Field label={t("Paste an invitation link")} value={link} onInput={setLink} />
        <button type="submit">{t("Redeem")}</button>
      </form>
    </Section>
  );
}

function Invitation() {
  const [invitation, setInvitation] = useState<InvitationLink | null>(null);
  const qr = useBlobUrl(invitation?.qrPng, "image/png");
  return (
    <Section title={t("Invitation link")}>
      <button
        type="button"
        onClick={async () => setInvitation((await attempt(() => api.contacts.createInvitation({}))) ?? null)}
      >
        {t("Create invitation link")}
      </button>
      {invitation && (
        <div class="invitation">
          <label class="field">
            <span>{t("Invitation link")}</span>
            <input readOnly value={invitation.link} onFocus={(e) => (e.target as HTMLInputElement).select()} />
          </label>
          <CopyButton text={invitation.link} />
          <p class="muted">
            {t("Expires")}: {time(invitation.expiresAtMs)}
          </p>
          {qr ? (
            <img class="qr" src={qr} alt={t("QR code")} />
          ) : (
            invitation.qrText && (
              <pre class="qr-text" role="img" aria-label={t("QR code")}>
                {invitation.qrText}
              </pre>
            )
          )}
        </div>
      )}
    </Section>
  );
}

function Requests(props: { requests: FriendRequest[]; onChange: () => void }) {
  const incoming = props.requests.filter((r) => !r.outgoing);
  const outgoing = props.requests.filter((r) => r.outgoing);
  const answer = async (call: () => Promise<unknown>) => {
    if ((await attempt(call)) !== undefined) {
      await refreshRooms();
      props.onChange();
    }
  };
  return (
    <Section title={t("Requests")}>
      <h3>{t("Incoming")}</h3>
      <ul>
        {incoming.map((r) => (
          <li key={r.id} data-request={r.id}>
            {r.displayName} · {r.userId} · {r.company} ({r.tenant}) · {r.state}
            {r.state === "pending" && (
              <span class="row wrap">
                <button type="button" onClick={() => answer(() => api.contacts.acceptFriendRequest({ id: r.id }))}>
                  {t("Accept")}
                </button>
                <button type="button" onClick={() => answer(() => api.contacts.declineFriendRequest({ id: r.id }))}>
                  {t("Decline")}
                </button>
                <button
                  type="button"
                  onClick={() => answer(() => api.contacts.declineFriendRequest({ id: r.id, block: true }))}
                >
                  {t("Decline and block")}
                </button>
              </span>
            )}
          </li>
        ))}
      </ul>
      <h3>{t("Outgoing")}</h3>
      <ul>
        {outgoing.map((r) => (
          <li key={r.id}>
            {r.userId} · {r.company} ({r.tenant}) · {r.state}
          </li>
        ))}
      </ul>
    </Section>
  );
}
