"""LINE's official Python SDK (line-bot-sdk 3.x) against the stand-in LINE
platform: proves the stand-in speaks LINE's contract as the SDK reads it.

Usage:
  python3 line_sdk_contract.py client JSON
      JSON: {"url", "access_token", "user_id", "group_id", "image_message_id",
             "reply_token"}. The SDK as a bot: pushes, retry keys, refusals,
      profiles, group calls, bot info, content, a reply token used twice.
  python3 line_sdk_contract.py webhooks SECRET FILE
      FILE: [{"body": str, "signature": str}, ...]. Each parsed with the SDK's
      WebhookParser into typed events; a tampered body must be refused.
  python3 line_sdk_contract.py pushes FILE
      FILE: [push request body, ...]. Each parsed with the SDK's own
      PushMessageRequest model, which must keep every field sent.

Prints one JSON object; exits non-zero on any mismatch, saying which.
"""

import hashlib
import json
import sys
import uuid


def fail(problems, result):
    result["problems"] = problems
    print(json.dumps(result, indent=1, sort_keys=True))
    sys.exit(1 if problems else 0)


def plain(value):
    """An SDK enum or value as plain JSON."""
    return getattr(value, "value", value)


# ---- client ---------------------------------------------------------------


def client(arg):
    from linebot.v3.messaging import (
        ApiClient,
        ApiException,
        Configuration,
        MessageAction,
        MessagingApi,
        MessagingApiBlob,
        PostbackAction,
        PushMessageRequest,
        QuickReply,
        QuickReplyItem,
        ReplyMessageRequest,
        Sender,
        StickerMessage,
        TextMessage,
    )

    c = json.loads(arg)
    result = {}
    problems = []

    def expect(name, got, want):
        if got != want:
            problems.append(f"{name}: got {got!r}, want {want!r}")

    def refused(name, call, status):
        try:
            call()
        except ApiException as e:
            body = json.loads(e.body) if e.body else None
            headers = {k.lower(): v for k, v in (e.headers or {}).items()}
            result[name] = {"status": e.status, "body": body, "headers": headers}
            expect(f"{name} status", e.status, status)
            return result[name]
        problems.append(f"{name}: the call succeeded, want {status}")
        return None

    configuration = Configuration(host=c["url"], access_token=c["access_token"])
    with ApiClient(configuration) as api_client:
        api = MessagingApi(api_client)
        blob = MessagingApiBlob(api_client)

        text = TextMessage(
            text="Hello from the SDK 👋",
            sender=Sender(name="Support", icon_url="https://example.com/icon.png"),
            quick_reply=QuickReply(
                items=[
                    QuickReplyItem(action=MessageAction(label="Yes", text="yes")),
                    QuickReplyItem(action=PostbackAction(label="Later", data="later")),
                ]
            ),
        )
        sticker = StickerMessage(package_id="446", sticker_id="1988")
        request = PushMessageRequest(to=c["user_id"], messages=[text, sticker])
        key = str(uuid.uuid4())
        pushed = api.push_message(request, x_line_retry_key=key)
        result["retry_key"] = key
        result["push"] = {
            "class": type(pushed).__name__,
            "sent_messages": [
                {"id": m.id, "quote_token": m.quote_token} for m in pushed.sent_messages
            ],
        }
        expect("push sent messages", len(pushed.sent_messages), 2)

        again = refused(
            "push_again",
            lambda: api.push_message(request, x_line_retry_key=key),
            409,
        )
        if again:
            expect("409 message", again["body"], {"message": "The retry key is already accepted"})
            if "x-line-accepted-request-id" not in again["headers"]:
                problems.append("409 without x-line-accepted-request-id")

        # The SDK's model refuses six messages itself; construct() skips its
        # check so the platform's own refusal is what is tested.
        six = PushMessageRequest.construct(
            to=c["user_id"],
            messages=[TextMessage(text=f"m{i}") for i in range(6)],
            notification_disabled=False,
            custom_aggregation_units=None,
        )
        too_many = refused("push_six", lambda: api.push_message(six), 400)
        if too_many:
            details = too_many["body"].get("details") or [{}]
            expect("six details", details[0].get("property"), "messages")
            expect("six message", details[0].get("message"), "Size must be between 1 and 5")

        refused("profile_unknown", lambda: api.get_profile("U" + "0" * 32), 404)

        profile = api.get_profile(c["user_id"])
        result["profile"] = {
            "class": type(profile).__name__,
            "display_name": profile.display_name,
            "user_id": profile.user_id,
            "picture_url": profile.picture_url,
            "language": profile.language,
        }
        expect("profile user", profile.user_id, c["user_id"])

        summary = api.get_group_summary(c["group_id"])
        result["group_summary"] = {
            "class": type(summary).__name__,
            "group_id": summary.group_id,
            "group_name": summary.group_name,
        }
        expect("summary group", summary.group_id, c["group_id"])

        ids = api.get_group_members_ids(c["group_id"])
        result["group_member_ids"] = {
            "class": type(ids).__name__,
            "member_ids": ids.member_ids,
            "next": ids.next,
        }

        member = api.get_group_member_profile(c["group_id"], c["user_id"])
        result["group_member_profile"] = {
            "class": type(member).__name__,
            "display_name": member.display_name,
            "user_id": member.user_id,
            "picture_url": member.picture_url,
        }

        info = api.get_bot_info()
        result["bot_info"] = {
            "class": type(info).__name__,
            "user_id": info.user_id,
            "basic_id": info.basic_id,
            "display_name": info.display_name,
            "chat_mode": plain(info.chat_mode),
            "mark_as_read_mode": plain(info.mark_as_read_mode),
        }

        content = blob.get_message_content(c["image_message_id"])
        result["content"] = {
            "len": len(content),
            "sha256": hashlib.sha256(bytes(content)).hexdigest(),
        }
        refused("content_unknown", lambda: blob.get_message_content("1"), 404)

        reply = ReplyMessageRequest(
            reply_token=c["reply_token"], messages=[TextMessage(text="Thanks for following")]
        )
        replied = api.reply_message(reply)
        result["reply"] = {
            "class": type(replied).__name__,
            "sent_messages": len(replied.sent_messages or []),
        }
        reused = refused("reply_again", lambda: api.reply_message(reply), 400)
        if reused:
            expect("reused token message", reused["body"], {"message": "Invalid reply token"})

    bad = Configuration(host=c["url"], access_token="not-the-token")
    with ApiClient(bad) as api_client:
        unauthorized = refused(
            "bad_token", lambda: MessagingApi(api_client).get_bot_info(), 401
        )
        if unauthorized:
            expect(
                "401 message",
                unauthorized["body"]["message"],
                "Authentication failed. Confirm that the access token in the "
                "authorization HTTP header is valid.",
            )

    fail(problems, result)


# ---- webhooks -------------------------------------------------------------


def describe_event(event):
    out = {
        "class": type(event).__name__,
        "type": getattr(event, "type", None),
        "mode": plain(getattr(event, "mode", None)),
        "timestamp": getattr(event, "timestamp", None),
        "webhook_event_id": getattr(event, "webhook_event_id", None),
        "is_redelivery": getattr(getattr(event, "delivery_context", None), "is_redelivery", None),
        "reply_token": getattr(event, "reply_token", None),
    }
    source = getattr(event, "source", None)
    if source is not None:
        out["source"] = {
            "class": type(source).__name__,
            "user_id": getattr(source, "user_id", None),
            "group_id": getattr(source, "group_id", None),
        }
    message = getattr(event, "message", None)
    if message is not None:
        out["message"] = {
            "class": type(message).__name__,
            "id": message.id,
            "quote_token": getattr(message, "quote_token", None),
            "text": getattr(message, "text", None),
            "package_id": getattr(message, "package_id", None),
            "sticker_id": getattr(message, "sticker_id", None),
            "sticker_resource_type": plain(getattr(message, "sticker_resource_type", None)),
            "file_name": getattr(message, "file_name", None),
            "file_size": getattr(message, "file_size", None),
            "content_provider": plain(
                getattr(getattr(message, "content_provider", None), "type", None)
            ),
        }
    if getattr(event, "unsend", None) is not None:
        out["unsend_message_id"] = event.unsend.message_id
    if getattr(event, "follow", None) is not None:
        out["is_unblocked"] = event.follow.is_unblocked
    for kind in ("joined", "left"):
        members = getattr(event, kind, None)
        if members is not None:
            out[kind] = [
                {"class": type(m).__name__, "user_id": m.user_id} for m in members.members
            ]
    return out


def webhooks(secret, path):
    from linebot.v3.exceptions import InvalidSignatureError
    from linebot.v3.webhook import WebhookParser

    with open(path, encoding="utf-8") as f:
        sent = json.load(f)
    parser = WebhookParser(secret)
    problems = []
    result = {"webhooks": []}
    for i, hook in enumerate(sent):
        try:
            payload = parser.parse(hook["body"], hook["signature"], as_payload=True)
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            problems.append(f"webhook {i}: {type(e).__name__}: {e}")
            continue
        events = [describe_event(e) for e in payload.events]
        for e in events:
            if e["class"] == "UnknownEvent":
                problems.append(f"webhook {i}: the SDK did not recognise an event: {e}")
            if e.get("message", {}).get("class") in (None, "MessageContent") and "message" in e:
                problems.append(f"webhook {i}: untyped message content: {e}")
        result["webhooks"].append({"destination": payload.destination, "events": events})

    tampered = next((h for h in sent if '"events":[{' in h["body"]), None)
    if tampered is None:
        problems.append("no webhook with events to tamper with")
    else:
        body = tampered["body"].replace('"events":[{', '"events":[{"x":1,', 1)
        try:
            parser.parse(body, tampered["signature"])
            problems.append("a tampered body was accepted")
        except InvalidSignatureError:
            result["tampered_rejected"] = True
    fail(problems, result)


# ---- pushes ---------------------------------------------------------------


def kept(sent, parsed, where):
    """Every field in `sent` is in `parsed` with the same value."""
    if isinstance(sent, dict):
        if not isinstance(parsed, dict):
            return [f"{where}: became {type(parsed).__name__}"]
        out = []
        for key, value in sent.items():
            if key not in parsed:
                out.append(f"{where}.{key}: dropped by the SDK's model (unknown field)")
            else:
                out.extend(kept(value, parsed[key], f"{where}.{key}"))
        return out
    if isinstance(sent, list):
        if not isinstance(parsed, list) or len(parsed) != len(sent):
            return [f"{where}: list changed to {parsed!r}"]
        out = []
        for i, (a, b) in enumerate(zip(sent, parsed)):
            out.extend(kept(a, b, f"{where}[{i}]"))
        return out
    if sent != parsed or type(sent) is bool and type(parsed) is not bool:
        return [f"{where}: sent {sent!r}, the SDK's model has {parsed!r}"]
    return []


def pushes(path):
    from linebot.v3.messaging import PushMessageRequest

    with open(path, encoding="utf-8") as f:
        bodies = json.load(f)
    problems = []
    result = {"checked": len(bodies), "bodies": []}
    for i, body in enumerate(bodies):
        try:
            parsed = PushMessageRequest.from_json(json.dumps(body)).to_dict()
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            message = f"push {i}: the SDK's PushMessageRequest refused it: {type(e).__name__}: {e}"
            problems.append(message)
            result["bodies"].append({"ok": False, "error": message})
            continue
        lost = kept(body, parsed, f"push {i}")
        problems.extend(lost)
        result["bodies"].append({"ok": not lost, "error": "; ".join(lost) or None})
    fail(problems, result)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "client" and len(sys.argv) == 3:
        client(sys.argv[2])
    elif mode == "webhooks" and len(sys.argv) == 4:
        webhooks(sys.argv[2], sys.argv[3])
    elif mode == "pushes" and len(sys.argv) == 3:
        pushes(sys.argv[2])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
