//! The `llm` capability: host-mediated calls to a chat-completions endpoint
//! (here a local server on 127.0.0.1), the grant, the token budget, every
//! way an endpoint can fail, the deadline, recording and replay, and a
//! campaign that uses it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reagent::llm::{Gateway, LlmConfig};
use reagent::sandbox::Limits;
use reagent::sandbox::test_guests::LLM_ECHO;
use reagent::strategy::data::{MemoryStore, StaticData, StrategyData};
use reagent::strategy::record::CallRecord;
use reagent::strategy::{
    CallInput, CallOutput, Grants, HypothesisPage, InsightPage, InsightQuery, LlmCompletion,
    LlmMessage, Phase, TrialPage,
};

use crate::campaign::{Project, text};
use crate::chat_server::{ChatServer, Reply};
use crate::support::{context, guest, sandbox};

const KEY_VAR: &str = "REAGENT_TEST_LLM_KEY";
const KEY: &str = "sk-test-d0-not-leak-7f3a";

fn config(url: &str) -> LlmConfig {
    LlmConfig {
        url: url.to_string(),
        model: "test-model".into(),
        api_key_env: Some(KEY_VAR.into()),
        token_budget: 10_000,
        max_tokens: 256,
        max_calls: 4,
        timeout: Duration::from_secs(5),
    }
}

/// Strategy data whose `complete` goes through a gateway.
struct WithLlm(StaticData, Gateway);

impl StrategyData for WithLlm {
    fn trial_count(&self) -> u64 {
        self.0.trial_count()
    }
    fn trials(&self, cursor: u64, limit: u32) -> TrialPage {
        self.0.trials(cursor, limit)
    }
    fn hypotheses(&self, cursor: u64, limit: u32) -> HypothesisPage {
        self.0.hypotheses(cursor, limit)
    }
    fn curve(&self, trial: u64, metric: &str) -> Vec<(u32, f64)> {
        self.0.curve(trial, metric)
    }
    fn insights(&self, query: &InsightQuery, cursor: u64, limit: u32) -> InsightPage {
        self.0.insights(query, cursor, limit)
    }
    fn complete(&self, messages: &[LlmMessage], max_tokens: u32) -> Result<LlmCompletion, String> {
        self.1.complete(messages, max_tokens)
    }
}

#[allow(unsafe_code)]
fn set_key() {
    // Edition 2024 marks set_var unsafe because another thread may read
    // the environment at the same time; every test sets the same value, so
    // a racing reader sees either nothing or this value.
    unsafe { std::env::set_var(KEY_VAR, KEY) };
}

/// One propose call of llm-echo under `grants`, the campaign name as the
/// prompt and `calls` completions.
fn call(
    gateway: Gateway,
    grants: Grants,
    campaign: &str,
    calls: u32,
    limits: &Limits,
) -> CallRecord {
    set_key();
    let strategy = sandbox()
        .load(&guest(LLM_ECHO), &grants)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut ctx = context(campaign, Phase::Validate, 1);
    ctx.tags.push(format!("llm-calls={calls}"));
    let data: Arc<dyn StrategyData> = Arc::new(WithLlm(StaticData::default(), gateway));
    sandbox()
        .call(
            &strategy,
            CallInput::Propose {
                context: ctx,
                max: 2,
            },
            data,
            MemoryStore::default(),
            limits,
        )
        .0
}

fn granted() -> Grants {
    Grants {
        llm: true,
        ..Grants::default()
    }
}

/// What llm-echo said the last completion was: "ok N content" or "err reason".
fn said(record: &CallRecord) -> String {
    match &record.outcome {
        Ok(CallOutput::Hypotheses(h)) => h[0].title.split(" | ").next().unwrap().to_string(),
        other => panic!("the call failed: {other:?}"),
    }
}

/// The call was answered with an error saying `expect`, and nothing reached
/// the server.
fn refused_unsent(record: &CallRecord, server: &ChatServer, expect: &str) {
    assert!(said(record).contains(expect), "{}", said(record));
    assert!(said(record).starts_with("err "), "{}", said(record));
    assert!(server.requests().is_empty());
}

#[test]
fn a_granted_strategy_reaches_the_endpoint_through_the_host_and_every_exchange_is_recorded() {
    let server = ChatServer::replying("try lr 0.1", 21, 5);
    let record = call(
        Gateway::new(config(&server.url), 0),
        granted(),
        "ranker-ne",
        1,
        &Limits::default(),
    );
    assert_eq!(said(&record), "ok 26 try lr 0.1");

    // The endpoint got the chat-completions request, with the key the
    // strategy never saw.
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.body["model"], "test-model");
    assert_eq!(r.body["max_tokens"], 64);
    assert_eq!(r.body["messages"][0]["role"], "system");
    assert!(r.prompt().contains("ranker-ne #0"), "{}", r.prompt());
    assert_eq!(r.header("authorization"), Some(&*format!("Bearer {KEY}")));

    // The transcript holds the prompt and the answer, never the key.
    let calls: Vec<_> = record
        .host_calls
        .iter()
        .filter(|c| c.function == "llm.complete")
        .collect();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].request.to_string().contains("ranker-ne #0"));
    assert!(calls[0].response.to_string().contains("try lr 0.1"));
    let all = serde_json::to_string(&record).unwrap();
    assert!(!all.contains(KEY), "the key leaked into the record");

    // Replay answers from the recording: no server needed.
    drop(server);
    let strategy = sandbox().load(&guest(LLM_ECHO), &granted()).unwrap();
    let replay = sandbox().replay(&strategy, &record);
    assert!(replay.identical, "{:?}", replay.differences);
}

#[test]
fn without_the_grant_the_import_answers_an_error_and_nothing_is_sent() {
    let server = ChatServer::replying("x", 1, 1);
    let record = call(
        Gateway::new(config(&server.url), 0),
        Grants::default(),
        "c",
        2,
        &Limits::default(),
    );
    refused_unsent(&record, &server, "err the operator did not grant `llm`");
}

#[test]
fn the_token_budget_and_the_call_limit_hold_within_and_across_calls() {
    let server = ChatServer::replying("fine", 50, 10);
    let mut c = config(&server.url);
    c.token_budget = 100;
    // 60 tokens each: the first two fit (the second overshoots the budget
    // by what the endpoint reported), the third finds it spent.
    let record = call(
        Gateway::new(c.clone(), 0),
        granted(),
        "b",
        3,
        &Limits::default(),
    );
    assert!(
        said(&record)
            .starts_with("err the campaign's language-model token budget is spent (120 of 100"),
        "{}",
        said(&record)
    );
    assert_eq!(server.requests().len(), 2);

    // A later call of the same campaign starts from what was used, and a
    // prompt bigger than what is left is refused before it is sent.
    for (used, expect) in [(100, "budget is spent"), (97, "the prompt alone")] {
        let record = call(
            Gateway::new(c.clone(), used),
            granted(),
            "b",
            1,
            &Limits::default(),
        );
        assert!(said(&record).contains(expect), "{}", said(&record));
    }
    assert_eq!(server.requests().len(), 2);

    // At most max_calls completions per strategy call.
    c.token_budget = 10_000;
    c.max_calls = 2;
    let record = call(Gateway::new(c, 0), granted(), "b", 3, &Limits::default());
    assert!(
        said(&record).contains("already made 2 language-model calls"),
        "{}",
        said(&record)
    );
    assert_eq!(server.requests().len(), 4);

    // The completion asked for is capped by llm.max_tokens.
    let mut c = config(&server.url);
    c.max_tokens = 16;
    call(Gateway::new(c, 0), granted(), "b", 1, &Limits::default());
    assert_eq!(server.requests()[4].body["max_tokens"], 16);
}

#[test]
fn a_down_slow_or_broken_endpoint_is_an_error_answer_and_the_strategy_goes_on() {
    // Down: nothing listens on the port.
    let url = nothing_listens();
    let record = call(
        Gateway::new(config(&url), 0),
        granted(),
        "d",
        1,
        &Limits::default(),
    );
    assert!(said(&record).contains("unreachable"), "{}", said(&record));

    let cases: Vec<(Reply, &str)> = vec![
        (
            Reply::Slow(
                Duration::from_secs(3),
                Box::new(Reply::Chat("late".into(), 1, 1)),
            ),
            "did not answer within 1s",
        ),
        (
            Reply::Raw(200, "<html>bad gateway</html>".into()),
            "not JSON",
        ),
        (Reply::Raw(200, "{\"choices\": [".into()), "not JSON"),
        (
            Reply::Raw(401, r#"{"error":{"message":"invalid api key"}}"#.into()),
            "HTTP 401",
        ),
        (
            Reply::Raw(200, r#"{"object":"list","data":[]}"#.into()),
            "no choices[0]",
        ),
        (
            Reply::Chat("x".repeat(100_000), 10, 10),
            "strategies get at most",
        ),
        (Reply::Hangup, "the language-model endpoint"),
    ];
    for (reply, expect) in cases {
        let server = ChatServer::start(move |_| reply.clone());
        let mut c = config(&server.url);
        c.timeout = Duration::from_secs(1);
        let record = call(Gateway::new(c, 0), granted(), "d", 1, &Limits::default());
        assert!(
            said(&record).starts_with("err ") && said(&record).contains(expect),
            "expected {expect:?}: {}",
            said(&record)
        );
        // A failed exchange costs no tokens and is recorded like any answer.
        let response = &record
            .host_calls
            .iter()
            .find(|c| c.function == "llm.complete")
            .unwrap()
            .response;
        assert!(
            response.get("Err").is_some() || response.get("err").is_some(),
            "{response}"
        );
    }

    // A key that is not in the environment is named, and nothing is sent.
    let server = ChatServer::replying("x", 1, 1);
    let mut c = config(&server.url);
    c.api_key_env = Some("REAGENT_TEST_LLM_KEY_THAT_IS_NOT_SET".into());
    let record = call(Gateway::new(c, 0), granted(), "d", 1, &Limits::default());
    refused_unsent(
        &record,
        &server,
        "REAGENT_TEST_LLM_KEY_THAT_IS_NOT_SET (llm.api_key_env) is not set",
    );
}

#[test]
fn waiting_on_the_endpoint_is_not_charged_to_the_call_deadline() {
    let server = ChatServer::start(|_| {
        Reply::Slow(
            Duration::from_millis(1200),
            Box::new(Reply::Chat("slow but fine".into(), 3, 3)),
        )
    });
    let limits = Limits {
        deadline_ms: 400,
        ..Limits::default()
    };
    let record = call(
        Gateway::new(config(&server.url), 0),
        granted(),
        "w",
        1,
        &limits,
    );
    assert_eq!(said(&record), "ok 6 slow but fine");
    assert!(record.usage.wall_us > 1_200_000);
}

/// A chat-completions URL on a port where nothing listens.
fn nothing_listens() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/v1/chat/completions", l.local_addr().unwrap())
}

/// `reagent run toy.toml --yes` with the key in the environment; its output.
fn run_with_key(p: &Project) -> String {
    let o = p
        .command(&["run", "toy.toml", "--yes"])
        .env(KEY_VAR, KEY)
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    out
}

fn llm_campaign(url: &str, generator: &str, budget: u64) -> impl Fn(String) -> String {
    let (url, generator) = (url.to_string(), generator.to_string());
    move |t: String| {
        format!(
            "{t}\n[strategies]\ngenerator = {generator:?}\ngrants = {{ llm = true }}\n\n[llm]\nurl = {url:?}\nmodel = \"test-model\"\napi_key_env = \"{KEY_VAR}\"\ntoken_budget = {budget}\ntimeout = \"2s\"\n"
        )
        .replace("max_trials = 24", "max_trials = 14")
    }
}

#[test]
fn a_campaign_uses_its_language_model_records_every_exchange_and_goes_on_when_it_is_down() {
    // The first two requests get answers; from the third on the endpoint
    // hangs up.
    let answered = AtomicUsize::new(0);
    let server = ChatServer::start(move |_| {
        let n = answered.fetch_add(1, Ordering::SeqCst);
        if n < 2 {
            Reply::Chat(format!("answer {n}"), 40, 8)
        } else {
            Reply::Hangup
        }
    });
    let p = Project::new(llm_campaign(&server.url, LLM_ECHO, 100_000));
    let out = run_with_key(&p);
    assert!(
        out.contains("language model: 1 call, 48 tokens (48 of 100000 used)"),
        "{out}"
    );
    assert!(
        out.contains("language model: 1 call, 48 tokens (96 of 100000 used)"),
        "{out}"
    );
    assert!(
        out.contains("unavailable: the language-model endpoint"),
        "{out}"
    );
    let s = p.json(&["status", "1", "--json"]);
    assert_eq!(s["state"], "finished", "{s}");
    assert_eq!(s["llm"]["tokens_used"], 96, "{s}");
    let requests = server.requests();
    assert!(
        requests.len() >= 3,
        "every generator call asked: {}",
        requests.len()
    );
    assert_eq!(
        requests[0].header("authorization"),
        Some(&*format!("Bearer {KEY}"))
    );

    // Every prompt and answer is in the audit log, the key is not, and
    // every decision replays without the endpoint.
    let export = p.reagent(&["audit", "export"]);
    assert!(export.status.success());
    let export = String::from_utf8_lossy(&export.stdout);
    assert!(export.contains("\"llm.complete\""));
    assert!(export.contains("toy #0"));
    assert!(export.contains("answer 1"));
    assert!(!export.contains(KEY), "the key is in the audit log");
    drop(server);
    let v = p.reagent(&["audit", "verify"]);
    assert!(v.status.success(), "{}", text(&v));
    let r = p.reagent(&["audit", "replay", "--campaign", "1"]);
    assert!(r.status.success(), "{}", text(&r));
}

#[test]
fn a_campaign_whose_endpoint_is_down_still_finishes_and_says_so() {
    let url = nothing_listens();
    let p = Project::new(llm_campaign(&url, LLM_ECHO, 1_000));
    let out = run_with_key(&p);
    assert!(
        out.contains("unavailable: the language-model endpoint"),
        "{out}"
    );
    assert!(out.contains("the generator went on without it"), "{out}");
    let s = p.json(&["status", "1", "--json"]);
    assert_eq!(s["state"], "finished", "{s}");
    assert_eq!(s["llm"]["tokens_used"], 0, "{s}");
}

#[test]
fn llm_settings_are_checked_where_they_are_written() {
    let cases: Vec<(&str, &str)> = vec![
        (
            "\n[strategies]\ngrants = { llm = true }\n",
            "grants llm, but the file has no [llm] section",
        ),
        (
            "\n[strategies]\ngrants = { llm = true }\n[llm]\nurl = \"http://example.com/v1/chat/completions\"\nmodel = \"m\"\napi_key_env = \"K\"\n",
            "plain http would send the API key unencrypted",
        ),
        (
            "\n[llm]\nurl = \"https://x/v1\"\nmodel = \"m\"\ntoken_budget = 0\n",
            "llm.token_budget must be greater than 0",
        ),
        (
            "\n[llm]\nurl = \"https://x/v1\"\nmodel = \"m\"\nkey = \"inline\"\n",
            "unknown field `key`",
        ),
    ];
    for (extra, expect) in cases {
        let p = Project::new(|t| format!("{t}{extra}"));
        let o = p.reagent(&["plan", "toy.toml"]);
        let out = text(&o);
        assert!(!o.status.success(), "{extra}: {out}");
        assert!(out.contains(expect), "{extra}: {out}");
        assert!(out.contains("toy.toml:"), "the error is located: {out}");
        let list = p.json(&["status", "--json"]);
        assert_eq!(list.as_array().unwrap().len(), 0, "nothing registered");
    }
}
