//! The bot API and content host: routing, faults, the checks every request
//! gets, and the answers in LINE's shapes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State as Extract;
use axum::http::{HeaderMap, HeaderValue, Method, Response, Uri};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::checks::{self, Detail};
use crate::{
    BOT_DISPLAY_NAME, Endpoint, Fault, Push, REPLY_TOKEN_LIFETIME, Reply, RequestLog, State,
    picture_for, random_hex,
};

pub(crate) const AUTH_FAILED: &str = "Authentication failed. Confirm that the access token in the authorization HTTP header is valid.";

pub(crate) fn spawn(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = Router::new().fallback(handle).with_state(state);
    tokio::spawn(async move {
        let stopped = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!("stand-in LINE platform stopped serving: {e}");
        }
    });
}

/// An answer before it becomes a response.
struct Answer {
    status: u16,
    body: Vec<u8>,
    content_type: String,
    headers: Vec<(&'static str, String)>,
    error: Option<String>,
}

impl Answer {
    fn json(status: u16, body: Value) -> Answer {
        Answer {
            status,
            body: serde_json::to_vec(&body).unwrap_or_default(),
            content_type: "application/json".into(),
            headers: Vec::new(),
            error: None,
        }
    }

    fn ok(body: Value) -> Answer {
        Answer::json(200, body)
    }

    fn error(status: u16, message: &str) -> Answer {
        let mut answer = Answer::json(status, json!({"message": message}));
        answer.error = Some(message.to_string());
        answer
    }

    fn details(details: Vec<Detail>) -> Answer {
        let message = format!("The request body has {} error(s)", details.len());
        let list: Vec<Value> = details
            .iter()
            .map(|d| json!({"message": d.message, "property": d.property}))
            .collect();
        let mut answer = Answer::json(400, json!({"message": message, "details": list}));
        answer.error = Some(
            details
                .iter()
                .map(|d| format!("{}: {}", d.property, d.message))
                .collect::<Vec<_>>()
                .join("; "),
        );
        answer
    }

    fn not_found() -> Answer {
        Answer::error(404, "Not found")
    }

    fn into_response(self, request_id: &str) -> Response<Body> {
        let mut response = Response::builder()
            .status(self.status)
            .header("content-type", self.content_type)
            .header("x-line-request-id", request_id);
        for (name, value) in self.headers {
            response = response.header(name, value);
        }
        response
            .body(Body::from(self.body))
            .unwrap_or_else(|_| Response::new(Body::empty()))
    }
}

fn request_id() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Which endpoint a path is, for faults; `None` for paths LINE does not
/// serve.
fn endpoint_of(segments: &[&str]) -> Option<Endpoint> {
    match segments {
        ["v2", "bot", "message", "push"] => Some(Endpoint::Push),
        ["v2", "bot", "message", "reply"] => Some(Endpoint::Reply),
        ["v2", "bot", "message", _, "content"] => Some(Endpoint::Content),
        ["v2", "bot", "profile", _] => Some(Endpoint::Profile),
        ["v2", "bot", "group", _, ..] => Some(Endpoint::Group),
        ["v2", "bot", "info"] => Some(Endpoint::Info),
        _ => None,
    }
}

fn fault_answer(fault: &Fault) -> Answer {
    match fault {
        Fault::TooManyRequests { retry_after_secs } => {
            let mut answer = Answer::error(
                429,
                "The API rate limit has been exceeded. Try again later.",
            );
            if let Some(secs) = retry_after_secs {
                answer.headers.push(("retry-after", secs.to_string()));
            }
            answer
        }
        Fault::ServerError | Fault::Hang => Answer::error(500, "Internal server error"),
    }
}

async fn handle(
    Extract(state): Extract<Arc<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let path = uri.path().to_string();
    let id = request_id();
    if let Some(file) = path.strip_prefix("/_standin/picture/") {
        return picture(&state, file).into_response(&id);
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let endpoint = endpoint_of(&segments);
    let retry_key = headers
        .get("x-line-retry-key")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let log = |status: u16, error: Option<String>| RequestLog {
        method: method.to_string(),
        path: path.clone(),
        status,
        error,
        retry_key: retry_key.clone(),
    };

    // Faults come before every check.
    let fault = endpoint.and_then(|endpoint| {
        let mut inner = state.lock();
        let queued = inner
            .faults
            .iter()
            .position(|(e, _)| *e == Endpoint::Any || *e == endpoint);
        match queued {
            Some(i) => inner.faults.remove(i).map(|(_, f)| f),
            None => inner.outage.clone(),
        }
    });
    if let Some(fault) = fault {
        if fault == Fault::Hang {
            state
                .lock()
                .requests
                .push(log(0, Some("hung (fault)".into())));
            let mut shutdown = state.shutdown.clone();
            let _ = shutdown.wait_for(|stop| *stop).await;
            // Stopping ends the hang; the client has usually given up.
            tokio::time::sleep(Duration::from_millis(10)).await;
            return fault_answer(&fault).into_response(&id);
        }
        let answer = fault_answer(&fault);
        state
            .lock()
            .requests
            .push(log(answer.status, answer.error.clone()));
        return answer.into_response(&id);
    }

    let answer = if endpoint.is_none() {
        Answer::not_found()
    } else if !authorized(&state, &headers) {
        Answer::error(401, AUTH_FAILED)
    } else {
        route(
            &state,
            &method,
            &segments,
            &headers,
            &body,
            &id,
            retry_key.as_deref(),
        )
    };
    state
        .lock()
        .requests
        .push(log(answer.status, answer.error.clone()));
    answer.into_response(&id)
}

fn authorized(state: &State, headers: &HeaderMap) -> bool {
    let expected = format!("Bearer {}", state.config.access_token);
    headers
        .get("authorization")
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .is_some_and(|v| v == expected)
}

fn picture(state: &State, file: &str) -> Answer {
    let Some(id) = file.strip_suffix(".png") else {
        return Answer::not_found();
    };
    let picture = {
        let inner = state.lock();
        match inner.users.get(id) {
            Some(user) => Some(user.picture.clone()),
            None if id == state.config.bot_user_id => Some(picture_for(id)),
            None => None,
        }
    };
    match picture {
        Some(bytes) => Answer {
            status: 200,
            body: bytes,
            content_type: "image/png".into(),
            headers: Vec::new(),
            error: None,
        },
        None => Answer::not_found(),
    }
}

fn route(
    state: &State,
    method: &Method,
    segments: &[&str],
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
    retry_key: Option<&str>,
) -> Answer {
    let get = method == Method::GET;
    let post = method == Method::POST;
    if retry_key.is_some() && !matches!(segments, ["v2", "bot", "message", "push"]) {
        return Answer::error(
            400,
            "The X-Line-Retry-Key header is not supported by this endpoint",
        );
    }
    let _ = headers;
    match segments {
        ["v2", "bot", "message", "push"] if post => push(state, body, request_id, retry_key),
        ["v2", "bot", "message", "reply"] if post => reply(state, body),
        ["v2", "bot", "message", id, "content"] if get => content(state, id),
        ["v2", "bot", "profile", user] if get => profile(state, user),
        ["v2", "bot", "group", group, "summary"] if get => group_summary(state, group),
        ["v2", "bot", "group", group, "members", "ids"] if get => group_member_ids(state, group),
        ["v2", "bot", "group", group, "members", "count"] if get => {
            group_member_count(state, group)
        }
        ["v2", "bot", "group", group, "member", user] if get => {
            group_member_profile(state, group, user)
        }
        ["v2", "bot", "group", group, "leave"] if post => leave_group(state, group),
        ["v2", "bot", "info"] if get => bot_info(state),
        ["v2", "bot", "message", "push" | "reply"] | ["v2", "bot", "group", _, "leave"] => {
            Answer::error(405, "Method Not Allowed")
        }
        _ if post || get => Answer::not_found(),
        _ => Answer::error(405, "Method Not Allowed"),
    }
}

fn parse_body(body: &[u8]) -> Result<serde_json::Map<String, Value>, Answer> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Answer::error(400, "The request body must be a JSON object")),
        Err(e) => Err(Answer::error(
            400,
            &format!("The request body could not be parsed as JSON: {e}"),
        )),
    }
}

/// Checks common to push and reply: messages, notificationDisabled.
fn check_send_body(body: &serde_json::Map<String, Value>, details: &mut Vec<Detail>) {
    details.extend(checks::check_messages(body.get("messages")));
    if let Some(v) = body.get("notificationDisabled")
        && !v.is_boolean()
    {
        details.push(Detail {
            message: "Must be a boolean".into(),
            property: "notificationDisabled".into(),
        });
    }
}

fn sent_messages(state: &State, count: usize) -> Value {
    let mut inner = state.lock();
    let list: Vec<Value> = (0..count)
        .map(|_| {
            let id = crate::LinePlatform::next_message_id(&mut inner);
            json!({"id": id, "quoteToken": crate::random_token(88)})
        })
        .collect();
    json!({"sentMessages": list})
}

fn push(state: &State, raw: &[u8], request_id: &str, retry_key: Option<&str>) -> Answer {
    if let Some(key) = retry_key {
        if !checks::is_uuid(key) {
            return Answer::error(
                400,
                "The value of the X-Line-Retry-Key header must be a UUID (hexadecimal, 8-4-4-4-12)",
            );
        }
        if let Some(accepted) = state.lock().retry_keys.get(&key.to_lowercase()) {
            let mut answer = Answer::error(409, "The retry key is already accepted");
            answer
                .headers
                .push(("x-line-accepted-request-id", accepted.clone()));
            return answer;
        }
    }
    let body = match parse_body(raw) {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let mut details = Vec::new();
    let to = match body.get("to") {
        Some(Value::String(to)) => Some(to.clone()),
        Some(_) => {
            details.push(Detail {
                message: "Must be a string".into(),
                property: "to".into(),
            });
            None
        }
        None => {
            details.push(Detail {
                message: "Must not be null".into(),
                property: "to".into(),
            });
            None
        }
    };
    check_send_body(&body, &mut details);
    if let Some(units) = body.get("customAggregationUnits") {
        let ok = units
            .as_array()
            .is_some_and(|a| a.len() <= 1 && a.iter().all(Value::is_string));
        if !ok {
            details.push(Detail {
                message: "Must be an array of at most 1 string".into(),
                property: "customAggregationUnits".into(),
            });
        }
    }
    if !details.is_empty() {
        return Answer::details(details);
    }
    let to = to.unwrap_or_default();
    let messages: Vec<Value> = body["messages"].as_array().cloned().unwrap_or_default();
    {
        let mut inner = state.lock();
        let reachable = if let Some(user) = inner.users.get(&to) {
            user.following
        } else if let Some(group) = inner.groups.get(&to) {
            group.bot_in
        } else {
            false
        };
        if !reachable {
            return Answer::error(
                400,
                &format!("The property, 'to', in the request body is invalid (line-user-id: {to})"),
            );
        }
        if let Some(key) = retry_key {
            // Checked again under the same lock that records the push, so
            // two concurrent requests with one key cannot both be accepted.
            if let Some(accepted) = inner.retry_keys.get(&key.to_lowercase()) {
                let mut answer = Answer::error(409, "The retry key is already accepted");
                answer
                    .headers
                    .push(("x-line-accepted-request-id", accepted.clone()));
                return answer;
            }
            inner
                .retry_keys
                .insert(key.to_lowercase(), request_id.to_string());
        }
        for m in &messages {
            inner.conversation.push((to.clone(), m.clone()));
        }
        inner.pushes.push(Push {
            to,
            retry_key: retry_key.map(str::to_string),
            body: Value::Object(body),
            messages: messages.clone(),
            request_id: request_id.to_string(),
        });
    }
    Answer::ok(sent_messages(state, messages.len()))
}

fn reply(state: &State, raw: &[u8]) -> Answer {
    let body = match parse_body(raw) {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let mut details = Vec::new();
    let token = match body.get("replyToken") {
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => {
            details.push(Detail {
                message: "Must be a string".into(),
                property: "replyToken".into(),
            });
            None
        }
        None => {
            details.push(Detail {
                message: "Must not be null".into(),
                property: "replyToken".into(),
            });
            None
        }
    };
    check_send_body(&body, &mut details);
    if !details.is_empty() {
        return Answer::details(details);
    }
    let token = token.unwrap_or_default();
    let messages: Vec<Value> = body["messages"].as_array().cloned().unwrap_or_default();
    {
        let mut inner = state.lock();
        let lifetime = inner.reply_token_lifetime.unwrap_or(REPLY_TOKEN_LIFETIME);
        let Some(record) = inner.reply_tokens.get_mut(&token) else {
            return Answer::error(400, "Invalid reply token");
        };
        if record.used || record.issued.elapsed() > lifetime {
            return Answer::error(400, "Invalid reply token");
        }
        record.used = true;
        let to = record.chat.clone();
        for m in &messages {
            inner.conversation.push((to.clone(), m.clone()));
        }
        inner.replies.push(Reply {
            reply_token: token,
            to,
            messages: messages.clone(),
            body: Value::Object(body),
        });
    }
    Answer::ok(sent_messages(state, messages.len()))
}

fn profile_json(state: &State, user_id: &str, display_name: &str) -> Value {
    json!({
        "displayName": display_name,
        "userId": user_id,
        "pictureUrl": format!("{}/_standin/picture/{user_id}.png", state.url),
        "language": "en",
    })
}

fn profile(state: &State, user_id: &str) -> Answer {
    let inner = state.lock();
    match inner.users.get(user_id) {
        Some(user) if user.following => {
            Answer::ok(profile_json(state, user_id, &user.display_name))
        }
        _ => Answer::not_found(),
    }
}

fn content(state: &State, message_id: &str) -> Answer {
    let inner = state.lock();
    match inner.contents.get(message_id) {
        Some((bytes, content_type)) => Answer {
            status: 200,
            body: bytes.clone(),
            content_type: content_type.clone(),
            headers: Vec::new(),
            error: None,
        },
        None => Answer::not_found(),
    }
}

fn with_group<T>(
    state: &State,
    group_id: &str,
    f: impl FnOnce(&crate::GroupRecord, &crate::Inner) -> T,
) -> Option<T> {
    let inner = state.lock();
    let group = inner.groups.get(group_id).filter(|g| g.bot_in)?;
    Some(f(group, &inner))
}

fn group_summary(state: &State, group_id: &str) -> Answer {
    with_group(state, group_id, |group, _| {
        Answer::ok(json!({"groupId": group_id, "groupName": group.name}))
    })
    .unwrap_or_else(Answer::not_found)
}

fn group_member_ids(state: &State, group_id: &str) -> Answer {
    with_group(state, group_id, |group, _| {
        Answer::ok(json!({"memberIds": group.members}))
    })
    .unwrap_or_else(Answer::not_found)
}

fn group_member_count(state: &State, group_id: &str) -> Answer {
    with_group(state, group_id, |group, _| {
        Answer::ok(json!({"count": group.members.len()}))
    })
    .unwrap_or_else(Answer::not_found)
}

fn group_member_profile(state: &State, group_id: &str, user_id: &str) -> Answer {
    with_group(state, group_id, |group, inner| {
        match inner.users.get(user_id) {
            Some(user) if group.members.iter().any(|m| m == user_id) => {
                Some(profile_json(state, user_id, &user.display_name))
            }
            _ => None,
        }
    })
    .flatten()
    .map(|mut profile| {
        if let Some(p) = profile.as_object_mut() {
            p.remove("language");
        }
        Answer::ok(profile)
    })
    .unwrap_or_else(Answer::not_found)
}

fn leave_group(state: &State, group_id: &str) -> Answer {
    let mut inner = state.lock();
    match inner.groups.get_mut(group_id) {
        Some(group) if group.bot_in => {
            group.bot_in = false;
            Answer::ok(json!({}))
        }
        _ => Answer::not_found(),
    }
}

fn bot_info(state: &State) -> Answer {
    let id = &state.config.bot_user_id;
    Answer::ok(json!({
        "userId": id,
        "basicId": state.config.basic_id,
        "displayName": BOT_DISPLAY_NAME,
        "pictureUrl": format!("{}/_standin/picture/{id}.png", state.url),
        "chatMode": "bot",
        "markAsReadMode": "manual",
    }))
}
