//! The policy server end to end in memory: the fuzz bytes are what a client sends on one
//! connection, read by hyper's HTTP/1 parser and answered by `serve::router`. Properties:
//! every answer is 200, 400 (hyper refusing the request), 404, 405 or another 4xx hyper sends
//! for bad requests, never 5xx; a 200 carries one of the indexed policies as text/plain.
#![no_main]
use std::io;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use libfuzzer_sys::fuzz_target;
use mailsec_operator::serve::{PolicyIndex, router};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[path = "../common/index.rs"]
mod common;

static INDEX: LazyLock<PolicyIndex> = LazyLock::new(common::index);
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
});

/// A connection whose peer sent `input` and then closed its side; what the server writes is
/// kept in `output`.
struct Memory<'a> {
    input: &'a [u8],
    output: Vec<u8>,
}

impl AsyncRead for Memory<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.input.len().min(buf.remaining());
        let (head, rest) = self.input.split_at(n);
        buf.put_slice(head);
        self.input = rest;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Memory<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.output.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fuzz_target!(|input: &[u8]| {
    let mut conn = Memory {
        input,
        output: Vec::new(),
    };
    let service = TowerToHyperService::new(router(INDEX.clone()));
    RUNTIME.block_on(async {
        // half_close: a client that sends its request and closes its side still gets the answer.
        let _ = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .serve_connection(TokioIo::new(&mut conn), service)
            .await;
    });
    let out = conn.output;
    // Each response starts with a status line; bodies (policies, the 404 text) hold none.
    let mut rest = &out[..];
    while !rest.is_empty() {
        let text = || String::from_utf8_lossy(&out).into_owned();
        // HTTP/1.0 for a 1.0 request.
        assert!(
            rest.starts_with(b"HTTP/1.1 ") || rest.starts_with(b"HTTP/1.0 "),
            "{}",
            text()
        );
        let code: u16 = std::str::from_utf8(&rest[9..12])
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status code: {}", text()));
        // Ours: 200, 404, 405. hyper's for requests it cannot read: 400, 408, 413, 414, 431,
        // 501, 505. A 500 would be a handler failing.
        assert!(
            [200, 404, 405, 400, 408, 413, 414, 431, 501, 505].contains(&code),
            "{}",
            text()
        );
        let head_end =
            find(rest, b"\r\n\r\n").unwrap_or_else(|| panic!("no head end: {}", text())) + 4;
        let head = String::from_utf8_lossy(&rest[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse().expect("a length"));
        // A HEAD answer has the length but no body: the next response follows the head.
        let after = &rest[head_end..];
        let next = after.starts_with(b"HTTP/1.1 ") || after.starts_with(b"HTTP/1.0 ");
        let body_len = if after.is_empty() || next { 0 } else { length };
        assert!(after.len() >= body_len, "short body: {}", text());
        let body = &after[..body_len];
        if code == 200 {
            assert!(head.contains("content-type: text/plain"), "{head}");
            assert!(
                body.is_empty() || common::DOMAINS.iter().any(|(_, p)| p.as_bytes() == body),
                "{}",
                text()
            );
        }
        rest = &after[body_len..];
    }
});
