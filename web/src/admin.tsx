// The admin console. It is shown only to admin tokens, but the node is the
// authority: every call here is refused for a member's token, and the refusal
// is shown as the node gave it.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { useEffect, useState } from "preact/hooks";
import { api, attempt, describe } from "./api";
import {
  MemberState,
  Role,
  type AuditEntry,
  type AuditSearchRequestSchema,
  type ConnectedMember,
  type ExternalSettings,
  type LineSettings,
  type Member,
  type Peer,
  type PeerInvitation,
  type PeerTestReport,
  type VerifyAuditResponse,
} from "./gen/works/client/v1/client_pb";
import { t } from "./i18n";
import { store } from "./store";
import { Check, CopyButton, Field, Section, saveBlob, time } from "./ui";

const SECTIONS: [string, string][] = [
  ["members", "Members"],
  ["external", "External messaging"],
  ["line", "Chat with LINE users"],
  ["peering", "Peering"],
  ["audit", "Audit"],
];

export function AdminConsole(props: { section: string }) {
  return (
    <div class="admin">
      <nav aria-label={t("Admin")} class="subnav">
        {SECTIONS.map(([id, label]) => (
          <a key={id} href={`#/admin/${id}`} aria-current={props.section === id ? "page" : undefined}>
            {t(label)}
          </a>
        ))}
      </nav>
      {props.section === "members" && <MembersAdmin />}
      {props.section === "external" && <ExternalAdmin />}
      {props.section === "line" && <LineAdmin />}
      {props.section === "peering" && <PeeringAdmin />}
      {props.section === "audit" && <AuditAdmin />}
    </div>
  );
}

/** The node's refusal, in place of the section, when the token may not see it. */
function Refused(props: { message: string | null }) {
  if (!props.message) return null;
  return (
    <p class="refused" role="alert" data-refused="true">
      {props.message}
    </p>
  );
}

function MembersAdmin() {
  const [members, setMembers] = useState<Member[]>([]);
  const [refused, setRefused] = useState<string | null>(null);
  const [name, setName] = useState("");
  const [displayName, setDisplayName] = useState("");
  const [password, setPassword] = useState("");
  const [admin, setAdmin] = useState(false);
  const reload = async () => {
    try {
      setMembers((await api.admin.listMembers({})).members);
      setRefused(null);
    } catch (error) {
      setRefused(describe(error));
    }
  };
  useEffect(() => {
    void reload();
  }, []);
  const act = async (call: () => Promise<unknown>) => {
    if ((await attempt(call)) !== undefined) await reload();
  };
  return (
    <>
      <Refused message={refused} />
      <Section title={t("Add member")}>
        <form
          onSubmit={async (e) => {
            e.preventDefault();
            await act(() =>
              api.admin.addMember({ name, displayName, password, role: admin ? Role.ADMIN : Role.MEMBER }),
            );
            setName("");
            setDisplayName("");
            setPassword("");
          }}
        >
          <Field label={t("ID")} value={name} onInput={setName} required />
          <Field label={t("Display name")} value={displayName} onInput={setDisplayName} />
          <Field label={t("Password")} type="password" autocomplete="new-password" value={password} onInput={setPassword} required />
          <Check label={t("admin")} checked={admin} onChange={setAdmin} />
          <button type="submit">{t("Add member")}</button>
        </form>
      </Section>
      <Section title={t("Members")}>
        <table>
          <thead>
            <tr>
              <th scope="col">{t("ID")}</th>
              <th scope="col">{t("Display name")}</th>
              <th scope="col">{t("Role")}</th>
              <th scope="col">{t("State")}</th>
              <th scope="col"></th>
            </tr>
          </thead>
          <tbody>
            {members.map((m) => (
              <tr key={m.id} data-member={m.id}>
                <td>{m.id}</td>
                <td>{m.displayName}</td>
                <td>{m.role === Role.ADMIN ? t("admin") : t("member")}</td>
                <td>{m.state === MemberState.SUSPENDED ? t("suspended") : t("active")}</td>
                <td>
                  {m.state === MemberState.SUSPENDED ? (
                    <button type="button" aria-label={`${t("Unsuspend")} ${m.id}`} onClick={() => act(() => api.admin.unsuspendMember({ memberId: m.id }))}>
                      {t("Unsuspend")}
                    </button>
                  ) : (
                    <button type="button" aria-label={`${t("Suspend")} ${m.id}`} onClick={() => act(() => api.admin.suspendMember({ memberId: m.id }))}>
                      {t("Suspend")}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </Section>
    </>
  );
}

function ExternalAdmin() {
  const [settings, setSettings] = useState<ExternalSettings | null>(null);
  const [connected, setConnected] = useState<ConnectedMember[]>([]);
  const [refused, setRefused] = useState<string | null>(null);
  const [company, setCompany] = useState("");
  const [member, setMember] = useState("");
  const reload = async () => {
    try {
      const [s, c] = await Promise.all([
        api.external.getExternalSettings({}),
        api.external.listConnected({}),
      ]);
      setSettings(s);
      setCompany(s.company);
      setConnected(c.members);
      setRefused(null);
    } catch (error) {
      setRefused(describe(error));
    }
  };
  useEffect(() => {
    void reload();
  }, []);
  const change = async (patch: { enabled?: boolean; autoGrant?: boolean; restrictFiles?: boolean; company?: string }) => {
    const next = await attempt(() => api.external.setExternalSettings(patch));
    if (next) {
      setSettings(next);
      setCompany(next.company);
    }
  };
  return (
    <>
      <Refused message={refused} />
      {settings && (
        <Section title={t("External messaging")}>
          <Check
            label={t("Chat with WORKS users from other companies")}
            checked={settings.enabled}
            onChange={(enabled) => change({ enabled })}
          />
          <Check
            label={t("Connect new members automatically")}
            checked={settings.autoGrant}
            onChange={(autoGrant) => change({ autoGrant })}
          />
          <Check
            label={t("Restrict files")}
            checked={settings.restrictFiles}
            onChange={(restrictFiles) => change({ restrictFiles })}
          />
          <form
            onSubmit={(e) => {
              e.preventDefault();
              void change({ company });
            }}
          >
            <Field label={t("Company name shown to others")} value={company} onInput={setCompany} />
            <button type="submit">{t("Save")}</button>
          </form>
        </Section>
      )}
      <Section title={t("Connected members")}>
        <form
          onSubmit={async (e) => {
            e.preventDefault();
            if ((await attempt(() => api.external.addConnected({ memberId: member.trim() }))) !== undefined) {
              setMember("");
              await reload();
            }
          }}
        >
          <Field label={t("ID")} value={member} onInput={setMember} />
          <button type="submit">{t("Connect")}</button>
        </form>
        <ul>
          {connected.map((c) => (
            <li key={c.memberId} data-member={c.memberId}>
              {c.memberId} · {c.displayName} · {c.grantedBy} · {time(c.grantedAtMs)}{" "}
              <button
                type="button"
                aria-label={`${t("Disconnect")} ${c.memberId}`}
                onClick={async () => {
                  if ((await attempt(() => api.external.removeConnected({ memberId: c.memberId }))) !== undefined) await reload();
                }}
              >
                {t("Disconnect")}
              </button>
            </li>
          ))}
        </ul>
      </Section>
    </>
  );
}

/** The longest greeting the node takes: one LINE text message. */
const MAX_GREETING = 1000;

function LineAdmin() {
  const [settings, setSettings] = useState<LineSettings | null>(null);
  const [connected, setConnected] = useState<ConnectedMember[]>([]);
  const [refused, setRefused] = useState<string | null>(null);
  const [greeting, setGreeting] = useState("");
  const [saved, setSaved] = useState(false);
  const [member, setMember] = useState("");
  const reload = async () => {
    try {
      const [s, c] = await Promise.all([api.line.getLineSettings({}), api.line.listLineConnected({})]);
      setSettings(s);
      setGreeting(s.greeting);
      setConnected(c.members);
      setRefused(null);
    } catch (error) {
      setRefused(describe(error));
    }
  };
  useEffect(() => {
    void reload();
  }, []);
  const change = async (patch: { enabled?: boolean; autoGrant?: boolean; restrictFiles?: boolean; greeting?: string }) => {
    const next = await attempt(() => api.line.setLineSettings(patch));
    if (next) {
      setSettings(next);
      // A box ticked while the admin writes a greeting keeps the draft.
      if (patch.greeting !== undefined) setGreeting(next.greeting);
      return true;
    }
    // Refused: show the boxes as the node has them, not as clicked.
    if (settings) setSettings({ ...settings });
    return false;
  };
  const length = [...greeting].length;
  return (
    <>
      <Refused message={refused} />
      {settings && (
        <Section title={t("Chat with LINE users")}>
          {settings.channelId ? (
            <dl class="line-channel" data-line-channel={settings.channelId}>
              <dt>{t("Channel ID")}</dt>
              <dd>{settings.channelId}</dd>
              <dt>{t("Basic ID")}</dt>
              <dd>{settings.basicId}</dd>
            </dl>
          ) : (
            <p class="muted" data-line-channel="none">
              {t("No LINE channel on this node: add [line] to node.toml")}
            </p>
          )}
          <Check label={t("Use status")} checked={settings.enabled} onChange={(enabled) => change({ enabled })} />
          <Check
            label={t("Permit new members automatically")}
            checked={settings.autoGrant}
            onChange={(autoGrant) => change({ autoGrant })}
          />
          <Check
            label={t("Restrict files in rooms with LINE users")}
            checked={settings.restrictFiles}
            onChange={(restrictFiles) => change({ restrictFiles })}
          />
          <form
            onSubmit={async (e) => {
              e.preventDefault();
              setSaved(false);
              setSaved(await change({ greeting }));
            }}
          >
            <label class="field">
              <span>{t("Greeting message")}</span>
              <textarea
                rows={4}
                maxLength={MAX_GREETING}
                value={greeting}
                onInput={(e) => {
                  setGreeting((e.target as HTMLTextAreaElement).value);
                  setSaved(false);
                }}
              />
            </label>
            <p class="muted">
              {length} / {MAX_GREETING}
            </p>
            <div class="row">
              <button type="submit" disabled={greeting === settings.greeting}>
                {t("Save greeting")}
              </button>
              {saved && (
                <span role="status" class="ok">
                  {t("Saved")}
                </span>
              )}
            </div>
          </form>
        </Section>
      )}
      <Section title={t("LINE connected members")}>
        <form
          onSubmit={async (e) => {
            e.preventDefault();
            if ((await attempt(() => api.line.addLineConnected({ memberId: member.trim() }))) !== undefined) {
              setMember("");
              await reload();
            }
          }}
        >
          <Field label={t("ID")} value={member} onInput={setMember} />
          <button type="submit">{t("Add")}</button>
        </form>
        {connected.length === 0 && <p class="muted">{t("No members yet")}</p>}
        <ul>
          {connected.map((c) => (
            <li key={c.memberId} data-line-member={c.memberId}>
              {c.memberId} · {c.displayName} · {c.grantedBy} · {time(c.grantedAtMs)}{" "}
              <button
                type="button"
                aria-label={`${t("Remove")} ${c.memberId}`}
                onClick={async () => {
                  if ((await attempt(() => api.line.removeLineConnected({ memberId: c.memberId }))) !== undefined) await reload();
                }}
              >
                {t("Remove")}
              </button>
            </li>
          ))}
        </ul>
      </Section>
    </>
  );
}

function PeeringAdmin() {
  const [peers, setPeers] = useState<Peer[]>([]);
  const [refused, setRefused] = useState<string | null>(null);
  const [invitation, setInvitation] = useState<PeerInvitation | null>(null);
  const [forTenant, setForTenant] = useState("");
  const [token, setToken] = useState("");
  const [report, setReport] = useState<PeerTestReport | null>(null);
  const reload = async () => {
    try {
      setPeers((await api.peering.listPeers({})).peers);
      setRefused(null);
    } catch (error) {
      setRefused(describe(error));
    }
  };
  useEffect(() => {
    void reload();
  }, []);
  return (
    <>
      <Refused message={refused} />
      <Section title={t("Create invitation token")}>
        <form
          onSubmit={async (e) => {
            e.preventDefault();
            setInvitation((await attempt(() => api.peering.invitePeer({ forTenant: forTenant.trim() }))) ?? null);
          }}
        >
          <Field label={t("Peer tenant")} value={forTenant} onInput={setForTenant} placeholder="globex.example" />
          <button type="submit">{t("Create invitation token")}</button>
        </form>
        {invitation && (
          <div class="invitation">
            <label class="field">
              <span>{t("Invitation token")}</span>
              <input readOnly value={invitation.token} />
            </label>
            <CopyButton text={invitation.token} />
            <p class="muted">
              {t("Expires")}: {time(invitation.expiresAtMs)}
            </p>
          </div>
        )}
      </Section>
      <Section title={t("Accept a token")}>
        <form
          onSubmit={async (e) => {
            e.preventDefault();
            if (await attempt(() => api.peering.acceptPeer({ token: token.trim() }))) {
              setToken("");
              await reload();
            }
          }}
        >
          <Field label={t("Token")} value={token} onInput={setToken} />
          <button type="submit">{t("Accept")}</button>
        </form>
      </Section>
      <Section title={t("Peers")}>
        <table>
          <thead>
            <tr>
              <th scope="col">Tenant</th>
              <th scope="col">{t("State")}</th>
              <th scope="col">{t("Queue")}</th>
              <th scope="col">{t("Lag")}</th>
              <th scope="col">{t("Last error")}</th>
              <th scope="col"></th>
            </tr>
          </thead>
          <tbody>
            {peers.map((p) => (
              <tr key={p.tenant} data-peer={p.tenant}>
                <td>
                  {p.tenant}
                  <div class="muted">{p.endpoint}</div>
                </td>
                <td>{p.state}</td>
                <td>{String(p.queueDepth)}</td>
                <td>{String(p.lagMs)} ms</td>
                <td>{p.lastError}</td>
                <td class="row wrap">
                  <button
                    type="button"
                    aria-label={`${t("Test")} ${p.tenant}`}
                    onClick={async () => setReport((await attempt(() => api.peering.testPeer({ tenant: p.tenant }))) ?? null)}
                  >
                    {t("Test")}
                  </button>
                  <button
                    type="button"
                    aria-label={`${t("Remove")} ${p.tenant}`}
                    onClick={async () => {
                      const removed = await attempt(() => api.peering.removePeer({ tenant: p.tenant }));
                      if (removed) {
                        store.set({ error: removed.peerTold ? null : removed.detail || null });
                        await reload();
                      }
                    }}
                  >
                    {t("Remove")}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        <button type="button" onClick={reload} aria-label={t("Refresh")}>
          ↻
        </button>
        {report && (
          <div class="card" role="status">
            <strong>
              {report.tenant}: {report.ok ? "ok" : "failing"}
            </strong>
            <ul>
              {report.checks.map((c) => (
                <li key={c.name}>
                  {c.ok ? "✓" : "✗"} {c.name}: {c.detail}
                </li>
              ))}
            </ul>
          </div>
        )}
      </Section>
    </>
  );
}

function toMs(value: string): bigint {
  const ms = value ? Date.parse(value) : 0;
  return Number.isFinite(ms) ? BigInt(ms) : 0n;
}

const CSV_COLUMNS: (keyof AuditEntry)[] = [
  "seq",
  "atMs",
  "kind",
  "actor",
  "member",
  "externalUser",
  "peerTenant",
  "detail",
  "prevHash",
  "hash",
];

function csvCell(value: unknown): string {
  const text = String(value ?? "");
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function plain(entry: AuditEntry): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const column of CSV_COLUMNS) {
    const value = entry[column];
    out[column] = typeof value === "bigint" ? Number(value) : String(value);
  }
  return out;
}

function AuditAdmin() {
  const [member, setMember] = useState("");
  const [externalUser, setExternalUser] = useState("");
  const [peerTenant, setPeerTenant] = useState("");
  const [text, setText] = useState("");
  const [since, setSince] = useState("");
  const [until, setUntil] = useState("");
  const [entries, setEntries] = useState<AuditEntry[]>([]);
  const [refused, setRefused] = useState<string | null>(null);
  const [verify, setVerify] = useState<VerifyAuditResponse | null>(null);
  const filters = (): MessageInitShape<typeof AuditSearchRequestSchema> => ({
    member: member.trim(),
    externalUser: externalUser.trim(),
    peerTenant: peerTenant.trim(),
    text,
    sinceMs: toMs(since),
    untilMs: toMs(until),
  });
  const search = async (e?: Event) => {
    e?.preventDefault();
    try {
      setEntries((await api.audit.searchAudit({ ...filters(), limit: 200 })).entries);
      setRefused(null);
    } catch (error) {
      setRefused(describe(error));
    }
  };
  useEffect(() => {
    void search();
  }, []);
  const exportAs = async (format: "jsonl" | "csv") => {
    const lines: string[] = format === "csv" ? [CSV_COLUMNS.join(",")] : [];
    try {
      for await (const entry of api.audit.exportAudit(filters())) {
        const row = plain(entry);
        lines.push(format === "csv" ? CSV_COLUMNS.map((c) => csvCell(row[c])).join(",") : JSON.stringify(row));
      }
    } catch (error) {
      store.set({ error: describe(error) });
      return;
    }
    const type = format === "csv" ? "text/csv" : "application/jsonl";
    saveBlob(new Blob([lines.join("\n") + "\n"], { type }), `audit.${format}`);
  };
  return (
    <>
      <Refused message={refused} />
      <Section title={t("Audit")}>
        <form onSubmit={search} class="filters">
          <Field label={t("Member")} value={member} onInput={setMember} />
          <Field label={t("External user")} value={externalUser} onInput={setExternalUser} />
          <Field label={t("Peer tenant")} value={peerTenant} onInput={setPeerTenant} />
          <Field label={t("Text")} value={text} onInput={setText} />
          <Field label={t("Since")} type="datetime-local" value={since} onInput={setSince} />
          <Field label={t("Until")} type="datetime-local" value={until} onInput={setUntil} />
          <div class="row wrap">
            <button type="submit">{t("Search")}</button>
            <button type="button" onClick={() => exportAs("jsonl")}>
              {t("Export JSONL")}
            </button>
            <button type="button" onClick={() => exportAs("csv")}>
              {t("Export CSV")}
            </button>
            <button type="button" onClick={async () => setVerify((await attempt(() => api.audit.verifyAudit({}))) ?? null)}>
              {t("Verify")}
            </button>
          </div>
        </form>
        {verify && (
          <p role="status" class={verify.ok ? "ok" : "refused"}>
            {verify.ok
              ? `${t("Chain intact")} · ${t("Entries")}: ${verify.entries}`
              : `${t("Chain broken at")} ${verify.brokenAt}: ${verify.reason}`}
          </p>
        )}
        <div class="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">Time</th>
                <th scope="col">Kind</th>
                <th scope="col">Actor</th>
                <th scope="col">{t("Member")}</th>
                <th scope="col">{t("External user")}</th>
                <th scope="col">{t("Peer tenant")}</th>
                <th scope="col">Detail</th>
              </tr>
            </thead>
            <tbody>
              {entries.map((entry) => (
                <tr key={String(entry.seq)}>
                  <td>{String(entry.seq)}</td>
                  <td>{time(entry.atMs)}</td>
                  <td>{entry.kind}</td>
                  <td>{entry.actor}</td>
                  <td>{entry.member}</td>
                  <td>{entry.externalUser}</td>
                  <td>{entry.peerTenant}</td>
                  <td>{entry.detail}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </Section>
    </>
  );
}
