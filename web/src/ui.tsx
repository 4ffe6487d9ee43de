// Small shared pieces.
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { t } from "./i18n";

export function Field(props: {
  label: string;
  value: string;
  onInput: (value: string) => void;
  type?: "text" | "password" | "datetime-local" | "email";
  name?: string;
  autocomplete?: string;
  required?: boolean;
  placeholder?: string;
}) {
  return (
    <label class="field">
      <span>{props.label}</span>
      <input
        type={(props.type ?? "text") as "text"}
        name={props.name}
        value={props.value}
        autocomplete={props.autocomplete}
        required={props.required}
        placeholder={props.placeholder}
        onInput={(e) => props.onInput((e.target as HTMLInputElement).value)}
      />
    </label>
  );
}

export function Check(props: { label: string; checked: boolean; onChange: (checked: boolean) => void }) {
  return (
    <label class="check">
      <input
        type="checkbox"
        checked={props.checked}
        onChange={(e) => props.onChange((e.target as HTMLInputElement).checked)}
      />
      <span>{props.label}</span>
    </label>
  );
}

export function Section(props: { title: string; children: ComponentChildren }) {
  return (
    <section class="card">
      <h2>{props.title}</h2>
      {props.children}
    </section>
  );
}

export function CopyButton(props: { text: string; label?: string }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(props.text);
    } catch {
      const area = document.createElement("textarea");
      area.value = props.text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    setCopied(true);
    setTimeout(() => setCopied(false), 1500);
  };
  return (
    <button type="button" onClick={copy} aria-label={props.label ?? t("Copy")}>
      {copied ? t("Copied") : t("Copy")}
    </button>
  );
}

/** An object URL for bytes, revoked when the component goes away. */
export function useBlobUrl(bytes: Uint8Array | undefined, type: string): string | undefined {
  const [url, setUrl] = useState<string>();
  useEffect(() => {
    if (!bytes || bytes.length === 0) {
      setUrl(undefined);
      return;
    }
    const made = URL.createObjectURL(new Blob([bytes as BlobPart], { type: type || "image/png" }));
    setUrl(made);
    return () => URL.revokeObjectURL(made);
  }, [bytes, type]);
  return url;
}

export function Avatar(props: { photo?: Uint8Array; type?: string; name: string }) {
  const url = useBlobUrl(props.photo, props.type ?? "");
  if (url) return <img class="avatar" src={url} alt={props.name} />;
  return (
    <span class="avatar initial" aria-hidden="true">
      {(props.name || "?").slice(0, 1).toUpperCase()}
    </span>
  );
}

export function time(ms: bigint): string {
  if (!ms) return "";
  return new Date(Number(ms)).toLocaleString();
}

export function saveBlob(blob: Blob, name: string) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
