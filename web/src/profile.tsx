import { useEffect, useState } from "preact/hooks";
import { api, attempt } from "./api";
import type { Profile } from "./gen/works/client/v1/client_pb";
import { t } from "./i18n";
import { store, useStore } from "./store";
import { Avatar, Field, Section, time } from "./ui";

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
