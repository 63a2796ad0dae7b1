//! `make bench`: invoke-with-cache's real binary (release profile) under the Runtime API stand-in
//! (`lambda-standin`), which answers `/next` at once when an event is queued, reads the whole
//! response before its 202 and sets TCP_NODELAY on its own side only, as Lambda's does.
//!
//! For a cold first answer, a busy warm invocation (`/next` answered at once) and an idle one
//! (`/next` held 60 ms), in each response mode, for a hit, a buffered miss and a stream's first
//! byte: the time from handing the event out to the answer (for a stream, to its first payload
//! byte), as the Runtime API sees it. The baseline is buffered mode, measured in the same run;
//! "streamed, no TCP_NODELAY" (RUNTIME_API_NODELAY=false) is the runtime as it was before
//! `shared::runtime_nodelay`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use integration_tests::functions::{binary, stack_env};
use lambda_standin::{Behaviour, Function, Outcome, RuntimeApi};
use serde_json::{json, Value};

const EVENT: &str = test_support::events::HTTP_API_V2_IAM;
const WARM_SAMPLES: usize = 30;
const COLD_SAMPLES: usize = 10;
const WITHIN: Duration = Duration::from_secs(30);

#[derive(Clone, Copy)]
struct Mode {
    name: &'static str,
    response_mode: &'static str,
    nodelay: bool,
}

const MODES: [Mode; 3] = [
    Mode {
        name: "buffered (baseline)",
        response_mode: "buffered",
        nodelay: true,
    },
    Mode {
        name: "streamed",
        response_mode: "streaming",
        nodelay: true,
    },
    Mode {
        name: "streamed, no TCP_NODELAY (before)",
        response_mode: "streaming",
        nodelay: false,
    },
];

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Hit,
    BufferedMiss,
    StreamFirstByte,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Hit => "hit",
            Case::BufferedMiss => "buffered miss",
            Case::StreamFirstByte => "stream, first byte",
        }
    }
}

fn event(prompt: &str, stream: bool) -> String {
    let mut event: Value = serde_json::from_str(EVENT).unwrap();
    let body = if stream {
        json!({"prompt": prompt, "stream": true})
    } else {
        json!({"prompt": prompt})
    };
    event["body"] = Value::String(body.to_string());
    event.to_string()
}

fn unique(label: &str) -> String {
    format!("runtime bench {label} {:?}", Instant::now())
}

async fn start(api: &RuntimeApi, mode: Mode) -> Function {
    let mut env = stack_env();
    env.push(("RESPONSE_MODE".into(), mode.response_mode.into()));
    env.push(("RUNTIME_API_NODELAY".into(), mode.nodelay.to_string()));
    env.push(("RUST_LOG".into(), "warn".into()));
    api.spawn(
        &binary("invoke-with-cache", "release"),
        "invoke-with-cache",
        env,
    )
    .unwrap()
}

fn measured(outcome: &Outcome, case: Case) -> Duration {
    let answer = outcome.http().unwrap();
    assert_eq!(
        answer.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    match case {
        Case::StreamFirstByte => outcome.first_byte().unwrap(),
        _ => outcome.duration(),
    }
}

/// Events for one sample of `case`: a hit repeats the prompt answered by the warm-up.
fn case_event(case: Case, hit_prompt: &str) -> String {
    match case {
        Case::Hit => event(hit_prompt, false),
        Case::BufferedMiss => event(&unique("miss"), false),
        Case::StreamFirstByte => event(&unique("stream"), true),
    }
}

/// Busy: the next event is always queued before the function asks for it.
async fn busy(mode: Mode, case: Case) -> Vec<Duration> {
    let api = RuntimeApi::start(Behaviour::default()).await.unwrap();
    let function = start(&api, mode).await;
    let hit_prompt = unique("hit");
    api.invoke(&function, event(&hit_prompt, false), WITHIN)
        .await
        .unwrap();
    let mut queued = api.enqueue(case_event(case, &hit_prompt));
    let mut samples = Vec::with_capacity(WARM_SAMPLES);
    for i in 0..WARM_SAMPLES {
        let following = (i + 1 < WARM_SAMPLES).then(|| api.enqueue(case_event(case, &hit_prompt)));
        let outcome = api.wait(&function, queued, WITHIN).await.unwrap();
        samples.push(measured(&outcome, case));
        match following {
            Some(next) => queued = next,
            None => break,
        }
    }
    samples
}

/// Idle: `/next` is held 60 ms before each event is handed out.
async fn idle(mode: Mode, case: Case) -> Vec<Duration> {
    let api = RuntimeApi::start(Behaviour {
        hold_next: Duration::from_millis(60),
    })
    .await
    .unwrap();
    let function = start(&api, mode).await;
    let hit_prompt = unique("hit");
    api.invoke(&function, event(&hit_prompt, false), WITHIN)
        .await
        .unwrap();
    let mut samples = Vec::with_capacity(WARM_SAMPLES / 2);
    for _ in 0..WARM_SAMPLES / 2 {
        let outcome = api
            .invoke(&function, case_event(case, &hit_prompt), WITHIN)
            .await
            .unwrap();
        samples.push(measured(&outcome, case));
    }
    samples
}

/// Cold: a fresh process with its event already queued; the first answer is a miss.
async fn cold(mode: Mode, case: Case) -> (Vec<Duration>, Vec<Duration>) {
    let mut init = Vec::new();
    let mut first = Vec::new();
    for _ in 0..COLD_SAMPLES {
        let api = RuntimeApi::start(Behaviour::default()).await.unwrap();
        let stream = case == Case::StreamFirstByte;
        let queued = api.enqueue(event(&unique("cold"), stream));
        let function = start(&api, mode).await;
        let outcome = api.wait(&function, queued, WITHIN).await.unwrap();
        let answered = if stream {
            outcome.first_payload_byte.unwrap()
        } else {
            outcome.received
        };
        measured(&outcome, case);
        init.push(api.first_poll().unwrap() - function.started);
        first.push(answered - function.started);
    }
    (init, first)
}

fn p50(samples: &[Duration]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2].as_secs_f64() * 1e3
}

fn mean(samples: &[Duration]) -> f64 {
    samples.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3 / samples.len() as f64
}

fn print_row(scenario: &str, case: Case, mode: Mode, samples: &[Duration], baseline: f64) {
    println!(
        "{:<8} {:<20} {:<36} {:>4} {:>9.2} {:>9.2} {:>+10.2}",
        scenario,
        case.name(),
        mode.name,
        samples.len(),
        p50(samples),
        mean(samples),
        p50(samples) - baseline,
    );
}

#[tokio::main]
async fn main() {
    let thresh = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_pingpong_thresh")
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    println!("\ninvoke-with-cache under the Runtime API stand-in (release profile)");
    println!("net.ipv4.tcp_pingpong_thresh = {thresh}; the baseline is buffered mode, same case");
    println!(
        "{:<8} {:<20} {:<36} {:>4} {:>9} {:>9} {:>10}",
        "instance", "case", "response mode", "n", "p50 ms", "mean ms", "p50 - base"
    );
    let cases = [Case::Hit, Case::BufferedMiss, Case::StreamFirstByte];
    for case in cases {
        let mut baseline = 0.0;
        for mode in MODES {
            // Only streamed mode streams: the buffered baseline of a stream's first byte is the
            // whole answer of the same streamed request, collected by the function.
            let samples = busy(mode, case).await;
            if mode.response_mode == "buffered" {
                baseline = p50(&samples);
            }
            print_row("busy", case, mode, &samples, baseline);
        }
        for mode in MODES {
            let samples = idle(mode, case).await;
            if mode.response_mode == "buffered" {
                baseline = p50(&samples);
            }
            print_row("idle", case, mode, &samples, baseline);
        }
    }
    for case in [Case::BufferedMiss, Case::StreamFirstByte] {
        let mut baseline = 0.0;
        for mode in MODES {
            let (init, first) = cold(mode, case).await;
            if mode.response_mode == "buffered" {
                baseline = p50(&first);
            }
            print_row("cold", case, mode, &first, baseline);
            if case == Case::BufferedMiss {
                println!(
                    "{:<8} {:<20} {:<36} {:>4} {:>9.2} {:>9.2}",
                    "cold",
                    "  init (first /next)",
                    mode.name,
                    init.len(),
                    p50(&init),
                    mean(&init)
                );
            }
        }
    }
}
