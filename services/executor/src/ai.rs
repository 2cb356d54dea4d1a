//! AI steps. Provider chain: the owner's `anthropic` credential → the server's
//! key → a deterministic local fallback that makes no network call. The output
//! records which provider answered (`"user"`, `"server"` or `"local"`).
//!
//! Outputs by task: summarize → `{"summary"}`, classify → `{"label"}`, extract →
//! `{"fields": {name: value|null}}`, generate → `{"text"}`; each plus `"provider"`.
//!
//! The local fallback: an extractive summary (the first sentences, ≤ 500
//! characters); the label whose words occur most often in the input (ties: the
//! first label); fields from a JSON object input or `name: value` lines; and for
//! generate the rendered prompt behind a clear marker.

use std::time::Duration;

use bizops_proto::catalog::v1::AiTask;
use serde_json::{Value, json};

use crate::steps::StepError;

/// Marker before the rendered prompt when no AI provider answered.
pub const LOCAL_MARKER: &str = "[local fallback: no AI provider configured]";

/// Which provider answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// The owner's own key.
    User,
    /// The server's key.
    Server,
    /// No network call.
    Local,
}

impl Provider {
    /// The label stored with the step.
    pub fn label(self) -> &'static str {
        match self {
            Provider::User => "user",
            Provider::Server => "server",
            Provider::Local => "local",
        }
    }
}

/// One AI request after rendering.
#[derive(Debug, Clone)]
pub struct Request {
    /// The task.
    pub task: AiTask,
    /// The rendered input text.
    pub input: String,
    /// The rendered extra instruction / prompt.
    pub prompt: String,
    /// Classify labels.
    pub labels: Vec<String>,
    /// Extract fields.
    pub fields: Vec<String>,
    /// Model.
    pub model: String,
    /// Output tokens.
    pub max_tokens: u32,
}

/// The local fallback.
pub fn local(req: &Request) -> Value {
    match req.task {
        AiTask::Summarize => json!({ "summary": summarize(&req.input) }),
        AiTask::Classify => json!({ "label": classify(&req.input, &req.labels) }),
        AiTask::Extract => json!({ "fields": extract(&req.input, &req.fields) }),
        AiTask::Generate | AiTask::Unspecified => json!({ "text": format!("{LOCAL_MARKER} {}", req.prompt) }),
    }
}

/// The first sentences of `text`, at most 500 characters.
pub fn summarize(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::new();
    for sentence in text.split_inclusive(['.', '!', '?']) {
        if out.chars().count() + sentence.chars().count() > 500 || out.matches(['.', '!', '?']).count() >= 3 {
            break;
        }
        out.push_str(sentence);
    }
    if out.is_empty() {
        out = text.chars().take(500).collect();
    }
    out.trim().to_owned()
}

/// The label whose words occur most often (case-insensitive); ties go to the
/// earlier label.
pub fn classify(text: &str, labels: &[String]) -> String {
    let haystack = text.to_lowercase();
    let words: Vec<&str> = haystack.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let mut best: Option<(usize, &String)> = None;
    for label in labels {
        let score: usize = label
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(|lw| words.iter().filter(|w| **w == lw || (lw.len() >= 4 && w.starts_with(lw))).count())
            .sum();
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, label));
        }
    }
    best.map(|(_, l)| l.clone()).unwrap_or_default()
}

/// Named fields from a JSON object, or from `name: value` / `name = value` (the
/// value runs to the end of its line).
pub fn extract(text: &str, fields: &[String]) -> serde_json::Map<String, Value> {
    let json_object = serde_json::from_str::<Value>(text.trim()).ok().and_then(|v| v.as_object().cloned());
    fields
        .iter()
        .map(|field| {
            let from_json = json_object
                .as_ref()
                .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(field)).map(|(_, v)| v.clone()));
            let value = from_json.or_else(|| {
                let pattern = format!(r"(?im)\b{}\s*[:=]\s*(.+?)\s*$", regex::escape(field));
                regex::Regex::new(&pattern)
                    .ok()
                    .and_then(|re| re.captures(text))
                    .and_then(|c| c.get(1))
                    .map(|m| Value::String(m.as_str().to_owned()))
            });
            (field.clone(), value.unwrap_or(Value::Null))
        })
        .collect()
}

/// The prompt sent to a model for a task.
fn instruction(req: &Request) -> String {
    let extra =
        if req.prompt.is_empty() { String::new() } else { format!("\n\nInstructions: {}", req.prompt) };
    match req.task {
        AiTask::Summarize => {
            format!("Summarise the following text in a few sentences.{extra}\n\n{}", req.input)
        }
        AiTask::Classify => format!(
            "Classify the following text. Answer with exactly one of these labels and nothing else: {}.{extra}\n\n{}",
            req.labels.join(", "),
            req.input
        ),
        AiTask::Extract => format!(
            "Extract these fields from the text and answer with a JSON object with exactly these keys (null when absent), and nothing else: {}.{extra}\n\n{}",
            req.fields.join(", "),
            req.input
        ),
        AiTask::Generate | AiTask::Unspecified => {
            if req.input.is_empty() {
                req.prompt.clone()
            } else {
                format!("{}\n\n{}", req.prompt, req.input)
            }
        }
    }
}

/// Calls the Anthropic Messages API and shapes the answer like [`local`].
pub async fn anthropic(
    http: &reqwest::Client,
    base_url: &str,
    key: &str,
    req: &Request,
    timeout: Duration,
) -> Answer {
    let body = json!({
        "model": req.model,
        "max_tokens": req.max_tokens,
        "messages": [{"role": "user", "content": instruction(req)}],
    });
    let response = http
        .post(format!("{}/v1/messages", base_url.trim_end_matches('/')))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .timeout(timeout)
        .send()
        .await;
    // A request that failed on the way may still have been processed: its use is unknown.
    let response = match response {
        Ok(r) => r,
        Err(e) => return Answer { output: Err(StepError::network(e)), tokens: None },
    };
    let status = response.status();
    if !status.is_success() {
        // Refused: nothing was generated.
        return Answer { output: Err(StepError::http("Anthropic", status)), tokens: Some(0) };
    }
    let answer = match crate::steps::read_capped(response, crate::steps::PROVIDER_ANSWER_MAX).await {
        Ok((_, true)) => Err(StepError::permanent("Anthropic's answer was larger than 4 MiB")),
        Ok((bytes, false)) => serde_json::from_slice::<Value>(&bytes)
            .map_err(|_| StepError::permanent("Anthropic returned an unreadable answer")),
        Err(e) => Err(e),
    };
    let answer = match answer {
        Ok(a) => a,
        Err(e) => return Answer { output: Err(e), tokens: None },
    };
    let usage = &answer["usage"];
    let tokens = usage["input_tokens"].as_u64().zip(usage["output_tokens"].as_u64()).map(|(i, o)| i + o);
    let output = answer["content"]
        .as_array()
        .and_then(|blocks| blocks.iter().find_map(|b| b["text"].as_str()))
        .ok_or_else(|| StepError::permanent("Anthropic returned no text"))
        .and_then(|text| shape(req, text.trim()));
    Answer { output, tokens }
}

/// What a call to the model came to: the output shaped for the task (or why there
/// is none), and the tokens it used (input and output): as Anthropic reported
/// them, zero when it refused the request, None when nobody can know (the
/// connection failed or timed out after the request was sent, or the answer was
/// unreadable).
#[derive(Debug)]
pub struct Answer {
    /// The step's output.
    pub output: Result<Value, StepError>,
    /// Tokens used, if known.
    pub tokens: Option<u64>,
}

fn shape(req: &Request, text: &str) -> Result<Value, StepError> {
    Ok(match req.task {
        AiTask::Summarize => json!({ "summary": text }),
        AiTask::Classify => {
            let label = req
                .labels
                .iter()
                .find(|l| {
                    l.eq_ignore_ascii_case(
                        text.trim_matches(|c: char| !c.is_alphanumeric() && c != '-' && c != '_'),
                    )
                })
                .or_else(|| req.labels.iter().find(|l| text.to_lowercase().contains(&l.to_lowercase())))
                .ok_or_else(|| StepError::permanent("the model answered with none of the labels"))?;
            json!({ "label": label })
        }
        AiTask::Extract => {
            let start = text.find('{').unwrap_or(0);
            let end = text.rfind('}').map(|i| i + 1).unwrap_or(text.len());
            let object: serde_json::Map<String, Value> =
                serde_json::from_str(&text[start..end.max(start)])
                    .map_err(|_| StepError::permanent("the model did not answer with a JSON object"))?;
            let fields: serde_json::Map<String, Value> = req
                .fields
                .iter()
                .map(|f| (f.clone(), object.get(f).cloned().unwrap_or(Value::Null)))
                .collect();
            json!({ "fields": fields })
        }
        AiTask::Generate | AiTask::Unspecified => json!({ "text": text }),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn req(task: AiTask, input: &str) -> Request {
        Request {
            task,
            input: input.into(),
            prompt: String::new(),
            labels: vec!["billing".into(), "outage".into(), "other".into()],
            fields: vec!["order_id".into(), "email".into(), "missing".into()],
            model: "m".into(),
            max_tokens: 10,
        }
    }

    #[test]
    fn the_local_fallback_is_deterministic_and_defined_for_each_task() {
        let text = "The site is down. Nothing loads! Customers see errors. Please fix. Thanks.";
        assert_eq!(
            local(&req(AiTask::Summarize, text))["summary"],
            "The site is down. Nothing loads! Customers see errors."
        );
        assert_eq!(local(&req(AiTask::Classify, "Outage: the outage started at 9"))["label"], "outage");
        assert_eq!(
            local(&req(AiTask::Classify, "nothing matches"))["label"],
            "billing",
            "ties go to the first label"
        );
        let fields = local(&req(AiTask::Extract, "Order_ID: 4711\nemail = ann@example.com\n"));
        assert_eq!(
            fields["fields"],
            json!({"order_id": "4711", "email": "ann@example.com", "missing": null})
        );
        let from_json = local(&req(AiTask::Extract, r#"{"order_id": 7, "EMAIL": "x@y.z"}"#));
        assert_eq!(from_json["fields"], json!({"order_id": 7, "email": "x@y.z", "missing": null}));
        let mut g = req(AiTask::Generate, "");
        g.prompt = "Write a haiku about invoices".into();
        assert_eq!(local(&g)["text"], format!("{LOCAL_MARKER} Write a haiku about invoices"));
        assert_eq!(local(&req(AiTask::Summarize, text)), local(&req(AiTask::Summarize, text)));
    }
}
