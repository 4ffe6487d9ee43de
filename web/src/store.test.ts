import { create } from "@bufbuild/protobuf";
import { expect, test } from "vitest";
import { RoomEventSchema } from "./gen/works/client/v1/client_pb";
import { isLineUser, lineSticker, mergeEvents, store } from "./store";

const event = (eventId: string, seq: number, atMs = 0) =>
  create(RoomEventSchema, { roomId: "r", eventId, seq: BigInt(seq), atMs: BigInt(atMs) });
const ids = () => (store.state.events.get("r") ?? []).map((e) => `${e.eventId}:${e.seq}`);

test("events are kept once each, in seq order; an unordered sent message waits last for the host's copy", () => {
  mergeEvents("r", [event("b", 2), event("a", 1)]);
  mergeEvents("r", [event("mine1", 0, 10), event("mine2", 0, 20)]);
  expect(ids()).toEqual(["a:1", "b:2", "mine1:0", "mine2:0"]);
  mergeEvents("r", [event("c", 3), event("mine1", 4), event("b", 2)]);
  expect(ids()).toEqual(["a:1", "b:2", "c:3", "mine1:4", "mine2:0"]);
  // A late copy without a seq does not undo the host's order.
  mergeEvents("r", [event("mine1", 0, 10)]);
  expect(ids()).toEqual(["a:1", "b:2", "c:3", "mine1:4", "mine2:0"]);
});

test("LINE users and LINE stickers are told apart by their form", () => {
  expect(isLineUser("u0123abcd@line.invalid")).toBe(true);
  expect(isLineUser("alice@acme.example")).toBe(false);
  expect(isLineUser("alice@line.invalid.example")).toBe(false);
  expect(lineSticker("line:446:1988")).toEqual({ packageId: "446", stickerId: "1988" });
  expect(lineSticker("ok")).toBeNull();
  expect(lineSticker("line:446")).toBeNull();
  expect(lineSticker("line:446:1988:1")).toBeNull();
  expect(lineSticker("line:a:1")).toBeNull();
});
