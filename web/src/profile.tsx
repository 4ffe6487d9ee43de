import { useEffect, useState } from "preact/hooks";
import { api, attempt, describe } from "./api";
import type { LineInvite, Profile } from "./gen/works/client/v1/client_pb";
import { t } from "./i18n";
import { store, useStore } from "./store";
import { Avatar, CopyButton, Field, Section, time, useBlobUrl } from "./ui";

export function ProfileView() {
  const [profile, setProfile] = useState<Profile | null>(null);
  const [name, setName] = useState("");
  const load = (p: Profile | undefined) => {
    if (!p) return;
    setProfile(p);
    setName(p.displayName);
    if (store.state.me) store.set({ me: { ...store.state.me, displayName: p.displayName } });
  };
  useEffect(() => {
    void attempt(() => api.profiles.getProfile({})).then(load);
  }, []);
  if (!profile) return null;
  return (
    <>
      <ProfileCard profile={profile} name={name} setName={setName} load={load} />
      <LineInviteView />
    </>
  );
}

function ProfileCard(props: {
  profile: Profile;
  name: string;
  setName: (name: string) => void;
  load: (p: Profile | undefined) => void;
}) {
  const { profile, name, setName, load } = props;
  const onPhoto = async (e: Event) => {
    const file = (e.target as HTMLInputElement).files?.[0];
    if (!file) return;
    const photo = new Uint8Array(await file.arrayBuffer());
    load(await attempt(() => api.profiles.setProfile({ photo })));
  };
  return (
    <Section title={t("Profile")}>
      <div class="row">
        <Avatar photo={profile.photo} type={profile.photoContentType} name={profile.displayName} />
        <div>
          <strong>{profile.displayName}</strong>
          <div class="muted">
            {profile.memberId} · {profile.company}
          </div>
        </div>
      </div>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          load(await attempt(() => api.profiles.setProfile({ displayName: name })));
        }}
      >
        <Field label={t("Display name")} value={name} onInput={setName} />
        <button type="submit">{t("Save")}</button>
      </form>
      <label class="field">
        <span>{t("Photo")}</span>
        <input type="file" accept="image/png,image/jpeg,image/gif,image/webp" onChange={onPhoto} />
      </label>
      {profile.photo.length > 0 && (
        <button
          type="button"
          onClick={async () => load(await attempt(() => api.profiles.setProfile({ clearPhoto: true })))}
        >
          {t("Remove photo")}
        </button>
      )}
    </Section>
  );
}

/**
 * "Add LINE user": the member's message ID, the link that opens the
 * company's LINE account with it typed in, and its QR code. A member the
 * node does not permit sees the node's reason instead.
 */
function LineInviteView() {
  const [invite, setInvite] = useState<LineInvite | null>(null);
  const [refused, setRefused] = useState<string | null>(null);
  const qr = useBlobUrl(invite?.qrPng, "image/png");
  useEffect(() => {
    api.line.getLineInvite({}).then(
      (i) => {
        setInvite(i);
        setRefused(null);
      },
      (error: unknown) => setRefused(describe(error)),
    );
  }, []);
  if (!invite && !refused) return null;
  return (
    <Section title={t("Add LINE user")}>
      {refused && (
        <p class="refused" data-refused="true">
          {refused}
        </p>
      )}
      {invite && (
        <div class="line-invite">
          <p class="muted">{t("A LINE user who sends your message ID to the account chats with you.")}</p>
          <label class="field">
            <span>{t("Message ID")}</span>
            <input readOnly class="message-id" value={invite.messageId} />
          </label>
          <CopyButton text={invite.messageId} label={`${t("Copy")} ${t("Message ID")}`} />
          <p>
            {t("LINE account")}: {invite.basicId}
          </p>
          <label class="field">
            <span>{t("Add me on LINE link")}</span>
            <input readOnly value={invite.link} onFocus={(e) => (e.target as HTMLInputElement).select()} />
          </label>
          <CopyButton text={invite.link} label={`${t("Copy")} ${t("Add me on LINE link")}`} />
          {qr ? (
            <img class="qr" src={qr} alt={t("LINE QR code")} />
          ) : (
            invite.qrTerminal && (
              <pre class="qr-text" role="img" aria-label={t("LINE QR code")}>
                {invite.qrTerminal}
              </pre>
            )
          )}
        </div>
      )}
    </Section>
  );
}

export function NoticesView() {
  const state = useStore();
  return (
    <Section title={t("Notices")}>
      {state.notices.length === 0 && <p class="muted">{t("No notices")}</p>}
      <ul class="notices">
        {state.notices.map((n) => (
          <li key={n.id} data-kind={n.kind}>
            <time>{time(n.atMs)}</time> <span>{n.text}</span>
          </li>
        ))}
      </ul>
    </Section>
  );
}
