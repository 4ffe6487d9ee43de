//! Clients of a node's web port as a browser is one: grpc-web over plain
//! HTTP/1.1 (tonic-web's client layer on a hyper HTTP/1 client), and raw
//! HTTP/1.1 requests for the static files.

use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::codegen::http::Uri;
use tonic_web::{GrpcWebCall, GrpcWebClientLayer, GrpcWebClientService};
use tower::Layer;
use works_proto::client::v1 as pb;

use super::TestNode;

/// A grpc-web transport: every call is an HTTP/1.1 POST with
/// `content-type: application/grpc-web`, as a browser makes it.
pub type WebSvc = GrpcWebClientService<HyperClient<HttpConnector, GrpcWebCall<tonic::body::Body>>>;

pub fn web_service() -> WebSvc {
    let http1 = HyperClient::builder(TokioExecutor::new()).build_http();
    GrpcWebClientLayer::new().layer(http1)
}

impl TestNode {
    /// `http://host:port` of the web port; the test fails when it is off.
    pub fn web_url(&self) -> &str {
        self.web.as_deref().expect("the node serves a web port")
    }

    pub fn web_origin(&self) -> Uri {
        self.web_url().parse().expect("web url")
    }

    pub fn web_auth(&self) -> pb::auth_client::AuthClient<WebSvc> {
        pb::auth_client::AuthClient::with_origin(web_service(), self.web_origin())
    }

    pub fn web_rooms(&self) -> pb::rooms_client::RoomsClient<WebSvc> {
        pb::rooms_client::RoomsClient::with_origin(web_service(), self.web_origin())
    }

    /// Logs in over grpc-web; the bearer token.
    pub async fn web_login(&self, id: &str, password: &str) -> String {
        self.web_auth()
            .login(pb::LoginRequest {
                member_id: id.into(),
                password: password.into(),
            })
            .await
            .expect("login over grpc-web")
            .into_inner()
            .token
    }
}

/// `message` with `authorization: Bearer token`, as the app sends it.
pub fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

/// An HTTP/1.1 answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `method path` over a new HTTP/1.1 connection with `headers`
/// (`Connection: close`, so the answer ends with the connection).
pub async fn http1(url: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let raw = exchange(url, method, path, headers)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    parse_answer(raw)
}

/// `http1`, where the node refusing the connection (a reset, a close
/// before any answer) is an `Err` rather than a failed test: for polls.
pub async fn try_http1(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Answer> {
    let raw = exchange(url, method, path, headers).await?;
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        return Err(std::io::Error::other("closed before an answer"));
    }
    Ok(parse_answer(raw))
}

/// Sends the request and reads the whole answer.
async fn exchange(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Vec<u8>> {
    let addr = url.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(super::EVENT_DEADLINE, tcp.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::other("no answer in time"))??;
    Ok(raw)
}

fn parse_answer(raw: Vec<u8>) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    assert!(
        status_line.starts_with("HTTP/1.1 "),
        "an HTTP/1.1 answer: {status_line}"
    );
    let status = status_line[9..12].parse().expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&raw[..end])
                .split(';')
                .next()
                .unwrap_or_default()
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = end + 2;
        out.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
}
