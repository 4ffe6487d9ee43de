// The client API over grpc-web, same origin as the page. Every call but
// Login carries `authorization: Bearer <token>`, as the node's gRPC API takes it.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import {
  Admin,
  Audit,
  Auth,
  Contacts,
  ExternalPolicy,
  Line,
  Peering,
  Profiles,
  Rooms,
} from "./gen/works/client/v1/client_pb";
import { store } from "./store";

const TOKEN_KEY = "works.token";

const bearer: Interceptor = (next) => async (request) => {
  const token = store.state.token;
  if (token) request.header.set("authorization", `Bearer ${token}`);
  return next(request);
};

const transport = createGrpcWebTransport({
  baseUrl: location.origin,
  interceptors: [bearer],
});

export const api = {
  auth: createClient(Auth, transport),
  admin: createClient(Admin, transport),
  peering: createClient(Peering, transport),
  external: createClient(ExternalPolicy, transport),
  line: createClient(Line, transport),
  audit: createClient(Audit, transport),
  contacts: createClient(Contacts, transport),
  profiles: createClient(Profiles, transport),
  rooms: createClient(Rooms, transport),
};

export function saveToken(token: string | null) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  store.set({ token });
}

/** A readable message for a failed call; the node's own words when it gave some. */
export function describe(error: unknown): string {
  if (error instanceof ConnectError) {
    return error.rawMessage ? `${Code[error.code]}: ${error.rawMessage}` : Code[error.code];
  }
  return error instanceof Error ? error.message : String(error);
}

export function isUnauthenticated(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.Unauthenticated;
}

/** Runs a call and shows its failure in the app's error bar. */
export async function attempt<T>(call: () => Promise<T>): Promise<T | undefined> {
  try {
    const result = await call();
    return result;
  } catch (error) {
    if (isUnauthenticated(error)) {
      saveToken(null);
    }
    // Offline, the connection state already says why calls fail.
    if (navigator.onLine) store.set({ error: describe(error) });
    return undefined;
  }
}

export function newKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
