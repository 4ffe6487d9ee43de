//! The request checks LINE applies to what a bot sends: message objects,
//! senders, quick replies and the retry key. Each failure names the
//! property the way LINE's error details do (`messages[0].text`).

use serde_json::Value;

/// One entry of an error's `details`: what is wrong and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detail {
    /// What is wrong, e.g. "Size must be between 1 and 5".
    pub message: String,
    /// Where, e.g. `messages[0].text`.
    pub property: String,
}

impl Detail {
    fn new(message: impl Into<String>, property: impl Into<String>) -> Detail {
        Detail {
            message: message.into(),
            property: property.into(),
        }
    }
}

/// The message types a bot may send. `file` is not one of them: bots
/// cannot send files.
pub const SENDABLE_MESSAGE_TYPES: &[&str] = &[
    "text", "textV2", "sticker", "image", "video", "audio", "location", "imagemap", "template",
    "flex",
];

/// The stickers an Official Account may send (LINE's published list of
/// sendable stickers): package id and its first and last sticker id.
pub const SENDABLE_STICKERS: &[(u64, u64, u64)] = &[
    (446, 1988, 2027),
    (789, 10855, 10894),
    (1070, 17839, 17878),
    (6136, 10551376, 10551399),
    (6325, 10979904, 10979927),
    (6359, 11069848, 11069871),
    (6362, 11087920, 11087943),
    (6370, 11088016, 11088039),
    (6632, 11825374, 11825397),
    (8515, 16581242, 16581265),
    (8522, 16581266, 16581289),
    (8525, 16581290, 16581313),
    (11537, 52002734, 52002773),
    (11538, 51626494, 51626533),
    (11539, 52114110, 52114149),
];

/// Whether LINE lets an Official Account send this sticker.
pub fn sticker_is_sendable(package_id: &str, sticker_id: &str) -> bool {
    let (Ok(package), Ok(sticker)) = (package_id.parse::<u64>(), sticker_id.parse::<u64>()) else {
        return false;
    };
    SENDABLE_STICKERS
        .iter()
        .any(|&(p, first, last)| p == package && (first..=last).contains(&sticker))
}

/// The most messages one push or reply may carry.
pub const MAX_MESSAGES: usize = 5;
/// The longest text message, in UTF-16 code units.
pub const MAX_TEXT_UTF16: usize = 5000;
/// The longest URL LINE accepts in a message object.
pub const MAX_URL: usize = 2000;
/// The longest `sender.name`, in characters.
pub const MAX_SENDER_NAME: usize = 20;
/// The most quick-reply buttons.
pub const MAX_QUICK_REPLY_ITEMS: usize = 13;
/// The longest quick-reply action label, in characters.
pub const MAX_LABEL: usize = 20;

/// Whether `key` is a UUID written as 8-4-4-4-12 hexadecimal digits, the
/// only form `X-Line-Retry-Key` accepts.
pub fn is_uuid(key: &str) -> bool {
    let groups: Vec<&str> = key.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    matches!(rest, Some(host) if !host.is_empty() && !host.starts_with('/'))
        && !url.chars().any(char::is_whitespace)
}

fn check_url(value: Option<&Value>, property: String, required: bool, out: &mut Vec<Detail>) {
    match value {
        None if required => out.push(Detail::new("Must not be null", property)),
        None => {}
        Some(Value::String(url)) if url.len() > MAX_URL => {
            out.push(Detail::new(
                format!("Length must be between 0 and {MAX_URL}"),
                property,
            ));
        }
        Some(Value::String(url)) if is_http_url(url) => {}
        Some(Value::String(_)) => out.push(Detail::new("Invalid URL", property)),
        Some(_) => out.push(Detail::new("Must be a string", property)),
    }
}

fn check_string(value: Option<&Value>, property: String, out: &mut Vec<Detail>) -> Option<String> {
    match value {
        None | Some(Value::Null) => {
            out.push(Detail::new("Must not be null", property));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            out.push(Detail::new("Must be a string", property));
            None
        }
    }
}

fn check_alt_text(message: &Value, at: &str, max: usize, out: &mut Vec<Detail>) {
    let property = format!("{at}.altText");
    if let Some(alt) = check_string(message.get("altText"), property.clone(), out) {
        let n = alt.chars().count();
        if n == 0 || n > max {
            out.push(Detail::new(
                format!("Length must be between 1 and {max}"),
                property,
            ));
        }
    }
}

/// Checks a request's `messages` array; every problem found, in order.
pub fn check_messages(messages: Option<&Value>) -> Vec<Detail> {
    let mut out = Vec::new();
    let Some(list) = messages.and_then(Value::as_array) else {
        let message = if messages.is_none_or(Value::is_null) {
            "Must not be null"
        } else {
            "Must be an array"
        };
        out.push(Detail::new(message, "messages"));
        return out;
    };
    if list.is_empty() || list.len() > MAX_MESSAGES {
        out.push(Detail::new(
            format!("Size must be between 1 and {MAX_MESSAGES}"),
            "messages",
        ));
        return out;
    }
    for (i, message) in list.iter().enumerate() {
        check_message(message, &format!("messages[{i}]"), &mut out);
    }
    out
}

fn check_message(message: &Value, at: &str, out: &mut Vec<Detail>) {
    if !message.is_object() {
        out.push(Detail::new("Must be an object", at));
        return;
    }
    let kind = message.get("type").and_then(Value::as_str).unwrap_or("");
    if !SENDABLE_MESSAGE_TYPES.contains(&kind) {
        out.push(Detail::new(
            format!(
                "Must be one of the following values: [{}]",
                SENDABLE_MESSAGE_TYPES.join(", ")
            ),
            format!("{at}.type"),
        ));
        return;
    }
    match kind {
        "text" | "textV2" => {
            let property = format!("{at}.text");
            if let Some(text) = check_string(message.get("text"), property.clone(), out) {
                if text.is_empty() {
                    out.push(Detail::new("May not be empty", property));
                } else if text.encode_utf16().count() > MAX_TEXT_UTF16 {
                    out.push(Detail::new(
                        format!("Length must be between 0 and {MAX_TEXT_UTF16}"),
                        property,
                    ));
                }
            }
        }
        "sticker" => {
            let package = check_string(message.get("packageId"), format!("{at}.packageId"), out);
            let sticker = check_string(message.get("stickerId"), format!("{at}.stickerId"), out);
            if let (Some(package), Some(sticker)) = (package, sticker)
                && !sticker_is_sendable(&package, &sticker)
            {
                out.push(Detail::new("Invalid sticker", format!("{at}.stickerId")));
            }
        }
        "image" | "video" => {
            check_url(
                message.get("originalContentUrl"),
                format!("{at}.originalContentUrl"),
                true,
                out,
            );
            check_url(
                message.get("previewImageUrl"),
                format!("{at}.previewImageUrl"),
                true,
                out,
            );
        }
        "audio" => {
            check_url(
                message.get("originalContentUrl"),
                format!("{at}.originalContentUrl"),
                true,
                out,
            );
            match message.get("duration") {
                Some(d) if d.as_u64().is_some() => {}
                Some(_) => out.push(Detail::new("Must be a number", format!("{at}.duration"))),
                None => out.push(Detail::new("Must not be null", format!("{at}.duration"))),
            }
        }
        "location" => {
            check_string(message.get("title"), format!("{at}.title"), out);
            check_string(message.get("address"), format!("{at}.address"), out);
            for key in ["latitude", "longitude"] {
                if !message.get(key).is_some_and(Value::is_number) {
                    out.push(Detail::new("Must be a number", format!("{at}.{key}")));
                }
            }
        }
        "imagemap" => {
            check_url(message.get("baseUrl"), format!("{at}.baseUrl"), true, out);
            check_alt_text(message, at, 1500, out);
        }
        "template" => {
            check_alt_text(message, at, 400, out);
            if !message.get("template").is_some_and(Value::is_object) {
                out.push(Detail::new("Must not be null", format!("{at}.template")));
            }
        }
        "flex" => {
            check_alt_text(message, at, 1500, out);
            if !message.get("contents").is_some_and(Value::is_object) {
                out.push(Detail::new("Must not be null", format!("{at}.contents")));
            }
        }
        _ => {}
    }
    if let Some(sender) = message.get("sender") {
        check_sender(sender, &format!("{at}.sender"), out);
    }
    if let Some(quick) = message.get("quickReply") {
        check_quick_reply(quick, &format!("{at}.quickReply"), out);
    }
}

fn check_sender(sender: &Value, at: &str, out: &mut Vec<Detail>) {
    if !sender.is_object() {
        out.push(Detail::new("Must be an object", at));
        return;
    }
    if let Some(name) = sender.get("name") {
        let property = format!("{at}.name");
        match name.as_str() {
            None => out.push(Detail::new("Must be a string", property)),
            Some(name) => {
                let n = name.chars().count();
                if n == 0 || n > MAX_SENDER_NAME {
                    out.push(Detail::new(
                        format!("Length must be between 1 and {MAX_SENDER_NAME}"),
                        property,
                    ));
                } else if name
                    .split(|c: char| !c.is_alphanumeric())
                    .any(|word| word.eq_ignore_ascii_case("line"))
                    || name.contains("ライン")
                {
                    out.push(Detail::new("Must not contain the word LINE", property));
                }
            }
        }
    }
    check_url(sender.get("iconUrl"), format!("{at}.iconUrl"), false, out);
}

/// The action types a quick-reply button may carry.
pub const QUICK_REPLY_ACTIONS: &[&str] = &[
    "message",
    "postback",
    "uri",
    "datetimepicker",
    "camera",
    "cameraRoll",
    "location",
    "richmenuswitch",
    "clipboard",
];

fn check_quick_reply(quick: &Value, at: &str, out: &mut Vec<Detail>) {
    let Some(items) = quick.get("items").and_then(Value::as_array) else {
        out.push(Detail::new("Must not be null", format!("{at}.items")));
        return;
    };
    if items.is_empty() || items.len() > MAX_QUICK_REPLY_ITEMS {
        out.push(Detail::new(
            format!("Size must be between 1 and {MAX_QUICK_REPLY_ITEMS}"),
            format!("{at}.items"),
        ));
        return;
    }
    for (i, item) in items.iter().enumerate() {
        let at = format!("{at}.items[{i}]");
        if item.get("type").and_then(Value::as_str) != Some("action") {
            out.push(Detail::new("Must be action", format!("{at}.type")));
        }
        let Some(action) = item.get("action").filter(|a| a.is_object()) else {
            out.push(Detail::new("Must not be null", format!("{at}.action")));
            continue;
        };
        let at = format!("{at}.action");
        let kind = action.get("type").and_then(Value::as_str).unwrap_or("");
        if !QUICK_REPLY_ACTIONS.contains(&kind) {
            out.push(Detail::new("Invalid action type", format!("{at}.type")));
            continue;
        }
        let label_required = matches!(kind, "message" | "postback" | "uri" | "datetimepicker");
        match action.get("label") {
            None if label_required => {
                out.push(Detail::new("Must not be null", format!("{at}.label")))
            }
            None => {}
            Some(Value::String(label)) => {
                let n = label.chars().count();
                if n == 0 || n > MAX_LABEL {
                    out.push(Detail::new(
                        format!("Length must be between 1 and {MAX_LABEL}"),
                        format!("{at}.label"),
                    ));
                }
            }
            Some(_) => out.push(Detail::new("Must be a string", format!("{at}.label"))),
        }
        match kind {
            "message" => {
                check_string(action.get("text"), format!("{at}.text"), out);
            }
            "postback" => {
                check_string(action.get("data"), format!("{at}.data"), out);
            }
            "uri" => check_url(action.get("uri"), format!("{at}.uri"), true, out),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(messages: Value) -> Vec<String> {
        check_messages(Some(&messages))
            .into_iter()
            .map(|d| d.property)
            .collect()
    }

    #[test]
    fn good_messages_pass() {
        let messages = json!([
            {"type": "text", "text": "hello", "sender": {"name": "Alice (Acme)", "iconUrl": "https://example.com/a.png"},
             "quickReply": {"items": [{"type": "action", "action": {"type": "message", "label": "Yes", "text": "yes"}},
                                      {"type": "action", "action": {"type": "camera"}}]}},
            {"type": "sticker", "packageId": "446", "stickerId": "1988"},
            {"type": "image", "originalContentUrl": "https://example.com/a.jpg", "previewImageUrl": "https://example.com/p.jpg"},
            {"type": "audio", "originalContentUrl": "https://example.com/a.m4a", "duration": 1000},
            {"type": "location", "title": "Office", "address": "1 Main St", "latitude": 35.0, "longitude": 139.0},
        ]);
        assert_eq!(props(messages), Vec::<String>::new());
    }

    #[test]
    fn message_count_is_one_to_five() {
        assert_eq!(props(json!([])), ["messages"]);
        let six: Vec<Value> = (0..6)
            .map(|_| json!({"type": "text", "text": "x"}))
            .collect();
        let details = check_messages(Some(&Value::Array(six)));
        assert_eq!(details[0].message, "Size must be between 1 and 5");
        assert_eq!(details[0].property, "messages");
        assert_eq!(check_messages(None)[0].property, "messages");
    }

    #[test]
    fn unknown_types_and_files_are_refused() {
        assert_eq!(
            props(json!([{"type": "text", "text": "a"}, {"type": "file", "fileName": "a.txt"}])),
            ["messages[1].type"]
        );
        assert_eq!(props(json!([{"text": "a"}])), ["messages[0].type"]);
    }

    #[test]
    fn text_must_be_non_empty_and_at_most_5000_utf16_units() {
        assert_eq!(
            props(json!([{"type": "text", "text": ""}])),
            ["messages[0].text"]
        );
        assert_eq!(
            props(json!([{"type": "text", "text": "a".repeat(5000)}])),
            Vec::<String>::new()
        );
        assert_eq!(
            props(json!([{"type": "text", "text": "a".repeat(5001)}])),
            ["messages[0].text"]
        );
        // An emoji outside the BMP is two UTF-16 units: 2500 fit, 2501 do not.
        assert!(props(json!([{"type": "text", "text": "😀".repeat(2500)}])).is_empty());
        assert_eq!(
            props(json!([{"type": "text", "text": "😀".repeat(2501)}])),
            ["messages[0].text"]
        );
        assert_eq!(
            props(json!([{"type": "text", "text": 5}])),
            ["messages[0].text"]
        );
    }

    #[test]
    fn only_sendable_stickers() {
        assert!(sticker_is_sendable("11537", "52002734"));
        assert!(!sticker_is_sendable("11537", "1"));
        assert!(!sticker_is_sendable("1", "1"));
        assert_eq!(
            props(json!([{"type": "sticker", "packageId": "1", "stickerId": "1"}])),
            ["messages[0].stickerId"]
        );
    }

    #[test]
    fn urls_are_absolute_http_and_short() {
        let long = format!("https://example.com/{}", "a".repeat(2000));
        assert_eq!(
            props(
                json!([{"type": "image", "originalContentUrl": "/a.jpg", "previewImageUrl": long}])
            ),
            [
                "messages[0].originalContentUrl",
                "messages[0].previewImageUrl"
            ]
        );
        assert_eq!(
            props(json!([{"type": "video", "originalContentUrl": "ftp://x/a.mp4"}])),
            [
                "messages[0].originalContentUrl",
                "messages[0].previewImageUrl"
            ]
        );
    }

    #[test]
    fn sender_rules() {
        let with = |sender: Value| props(json!([{"type": "text", "text": "a", "sender": sender}]));
        assert!(with(json!({"name": "Support"})).is_empty());
        assert_eq!(with(json!({"name": ""})), ["messages[0].sender.name"]);
        assert_eq!(
            with(json!({"name": "a".repeat(21)})),
            ["messages[0].sender.name"]
        );
        assert_eq!(
            with(json!({"name": "Line support"})),
            ["messages[0].sender.name"]
        );
        assert!(with(json!({"name": "Caroline"})).is_empty());
        assert_eq!(
            with(json!({"name": "ラインの人"})),
            ["messages[0].sender.name"]
        );
        assert_eq!(
            with(json!({"iconUrl": "icon.png"})),
            ["messages[0].sender.iconUrl"]
        );
    }

    #[test]
    fn quick_reply_rules() {
        let item =
            json!({"type": "action", "action": {"type": "postback", "label": "OK", "data": "ok"}});
        let items = |n: usize| Value::Array(vec![item.clone(); n]);
        let with =
            |quick: Value| props(json!([{"type": "text", "text": "a", "quickReply": quick}]));
        assert!(with(json!({"items": items(13)})).is_empty());
        assert_eq!(
            with(json!({"items": items(14)})),
            ["messages[0].quickReply.items"]
        );
        assert_eq!(
            with(
                json!({"items": [{"type": "action", "action": {"type": "message", "label": "a".repeat(21), "text": "x"}}]})
            ),
            ["messages[0].quickReply.items[0].action.label"]
        );
        assert_eq!(
            with(json!({"items": [{"type": "action", "action": {"type": "dance", "label": "x"}}]})),
            ["messages[0].quickReply.items[0].action.type"]
        );
        assert_eq!(
            with(json!({"items": [{"type": "action"}]})),
            ["messages[0].quickReply.items[0].action"]
        );
    }

    #[test]
    fn retry_keys_are_uuids() {
        assert!(is_uuid("123e4567-e89b-12d3-a456-426614174000"));
        assert!(is_uuid("123E4567-E89B-12D3-A456-426614174000"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
        assert!(!is_uuid("123e4567-e89b-12d3-a456-42661417400"));
        assert!(!is_uuid("123e4567-e89b-12d3-a456-42661417400g"));
        assert!(!is_uuid("retry-1"));
    }
}
