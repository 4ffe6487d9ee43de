import { useState } from "preact/hooks";
import { AdminConsole } from "./admin";
import { describe } from "./api";
import { ContactsView } from "./contacts";
import { Role } from "./gen/works/client/v1/client_pb";
import { setLang, t, type Lang } from "./i18n";
import { NoticesView, ProfileView } from "./profile";
import { RoomsView } from "./rooms";
import { go, useRoute } from "./route";
import { enableNotifications, notificationsOn, signIn, signOut } from "./session";
import { store, useStore } from "./store";
import { Field } from "./ui";

export function App() {
  const state = useStore();
  return (
    <>
      {state.error && (
        <div class="error" role="alert">
          <span>{state.error}</span>
          <button type="button" onClick={() => store.set({ error: null })} aria-label={t("Close")}>
            ×
          </button>
        </div>
      )}
      {state.token ? <Shell /> : <SignIn />}
    </>
  );
}

function LanguageSwitch() {
  const state = useStore();
  return (
    <label class="lang">
      <span class="visually-hidden">{t("Language")}</span>
      <select
        aria-label={t("Language")}
        value={state.lang}
        onChange={(e) => setLang((e.target as HTMLSelectElement).value as Lang)}
      >
        <option value="en">English</option>
        <option value="ja">日本語</option>
      </select>
    </label>
  );
}

function SignIn() {
  const [id, setId] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      await signIn(id.trim(), password);
      setPassword("");
    } catch (error) {
      store.set({ error: describe(error) });
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <form onSubmit={submit} aria-label={t("Sign in")}>
        <h1>Works</h1>
        <Field label={t("ID")} name="id" autocomplete="username" value={id} onInput={setId} required />
        <Field
          label={t("Password")}
          name="password"
          type="password"
          autocomplete="current-password"
          value={password}
          onInput={setPassword}
          required
        />
        <button type="submit" disabled={busy}>
          {busy ? t("Signing in…") : t("Sign in")}
        </button>
        <LanguageSwitch />
      </form>
    </main>
  );
}

function ConnectionState() {
  const { connection } = useStore();
  const label = connection === "live" ? t("Connected") : connection === "connecting" ? t("Connecting") : t("Offline");
  return (
    <span class={`connection ${connection}`} role="status" aria-live="polite" data-state={connection}>
      {label}
    </span>
  );
}

function Shell() {
  const state = useStore();
  const route = useRoute();
  const page = route[0] ?? "rooms";
  const isAdmin = state.me?.role === Role.ADMIN;
  const tab = (name: string, label: string) => (
    <a href={`#/${name}`} class={page === name ? "tab current" : "tab"} aria-current={page === name ? "page" : undefined}>
      {label}
    </a>
  );
  const unread = state.rooms.reduce((n, r) => n + Number(r.unread), 0);
  return (
    <div class="shell">
      <header>
        <nav aria-label="Main">
          {tab("rooms", unread ? `${t("Messages")} (${unread})` : t("Messages"))}
          {tab("contacts", t("Contacts"))}
          {tab("profile", t("Profile"))}
          {tab("notices", t("Notices"))}
          {isAdmin && tab("admin", t("Admin"))}
        </nav>
        <div class="tools">
          <ConnectionState />
          <span class="me" title={state.me?.id}>
            {state.me?.displayName || state.me?.id}
          </span>
          <button
            type="button"
            aria-pressed={notificationsOn()}
            onClick={() => enableNotifications(!notificationsOn())}
          >
            {notificationsOn() ? t("Notifications on") : t("Notify me of new messages")}
          </button>
          <LanguageSwitch />
          <button type="button" onClick={() => signOut()}>
            {t("Sign out")}
          </button>
        </div>
      </header>
      <main>
        {page === "rooms" && <RoomsView roomId={route[1]} />}
        {page === "contacts" && <ContactsView />}
        {page === "profile" && <ProfileView />}
        {page === "notices" && <NoticesView />}
        {page === "admin" && <AdminConsole section={route[1] ?? "members"} />}
        {!["rooms", "contacts", "profile", "notices", "admin"].includes(page) && (
          <button type="button" onClick={() => go("rooms")}>
            {t("Messages")}
          </button>
        )}
      </main>
    </div>
  );
}
