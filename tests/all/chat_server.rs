//! A chat-completions server on 127.0.0.1 for the `llm` tests: it speaks
//! the OpenAI request and response JSON over HTTP/1.1, records every
//! request, and answers each one as scripted (a completion, an HTTP error,
//! garbage, a slow answer, a hang-up).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value as Json, json};

/// How the server answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with a chat completion: content, prompt and completion tokens.
    Chat(String, u32, u32),
    /// Any status and body.
    Raw(u16, String),
    /// Waits, then answers.
    Slow(Duration, Box<Reply>),
    /// Closes the connection without answering.
    Hangup,
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Json,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The messages' contents, joined.
    pub fn prompt(&self) -> String {
        self.body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["content"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

type Script = dyn Fn(&Request) -> Reply + Send + Sync;

pub struct ChatServer {
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    queued: Arc<Mutex<VecDeque<Reply>>>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl ChatServer {
    /// Starts a server that answers with `script` unless a reply was
    /// queued with [`ChatServer::then`].
    pub fn start(script: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> ChatServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let queued = Arc::new(Mutex::new(VecDeque::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let thread = {
            let (requests, queued, stop) = (requests.clone(), queued.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let (requests, queued, script) =
                        (requests.clone(), queued.clone(), script.clone());
                    std::thread::spawn(move || serve(conn, &requests, &queued, &*script));
                }
            })
        };
        ChatServer {
            url: format!("http://{addr}/v1/chat/completions"),
            requests,
            queued,
            stop,
            addr,
            thread: Some(thread),
        }
    }

    /// A server that always answers with this completion.
    pub fn replying(content: &str, prompt_tokens: u32, completion_tokens: u32) -> ChatServer {
        let content = content.to_string();
        ChatServer::start(move |_| Reply::Chat(content.clone(), prompt_tokens, completion_tokens))
    }

    /// Answers the next request with `reply` (queued replies go first, in order).
    pub fn then(&self, reply: Reply) -> &Self {
        self.queued.lock().unwrap().push_back(reply);
        self
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for ChatServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut conn: TcpStream,
    requests: &Mutex<Vec<Request>>,
    queued: &Mutex<VecDeque<Reply>>,
    script: &Script,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let request = Request {
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Json::Null),
    };
    requests.lock().unwrap().push(request.clone());
    let reply = queued
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| script(&request));
    answer(&mut conn, &request, reply);
}

fn answer(conn: &mut TcpStream, request: &Request, reply: Reply) {
    let (status, body) = match reply {
        Reply::Hangup => return,
        Reply::Slow(wait, reply) => {
            std::thread::sleep(wait);
            return answer(conn, request, *reply);
        }
        Reply::Raw(status, body) => (status, body),
        Reply::Chat(content, prompt, completion) => (
            200,
            json!({
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 1_764_000_000,
                "model": request.body["model"],
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            })
            .to_string(),
        ),
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.flush();
}
