//! The mapping between the JSON shapes and the catalog's protobuf messages, both
//! ways. An unset protobuf enum (`*_UNSPECIFIED`) is an absent choice (`None`),
//! which the catalog's validation refuses by name.

use bizops_proto::catalog::v1::{self as pb, step::Kind};

use crate::{
    AiConfig, AiTask, ApprovalConfig, ConditionConfig, EmailConfig, HttpConfig, HttpHeader, HttpMethod,
    OnFalse, PilotSpec, RetryPolicy, Schedule, SlackConfig, Step, StepKind, TransformConfig,
};

/// The kind name of a stored step (`"ai"`, `"slack"`, …; one of [`crate::KINDS`]).
pub fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Ai(_) => "ai",
        Kind::Slack(_) => "slack",
        Kind::Email(_) => "email",
        Kind::Http(_) => "http",
        Kind::Transform(_) => "transform",
        Kind::Condition(_) => "condition",
        Kind::Approval(_) => "approval",
    }
}

impl From<PilotSpec> for pb::PilotSpec {
    fn from(s: PilotSpec) -> Self {
        Self {
            title: s.title,
            description: s.description,
            steps: s.steps.into_iter().map(Into::into).collect(),
            schedules: s.schedules.into_iter().map(Into::into).collect(),
            max_execution_seconds: s.max_execution_seconds,
        }
    }
}

impl From<pb::PilotSpec> for PilotSpec {
    /// Steps without a kind (which the catalog never stores) are left out.
    fn from(s: pb::PilotSpec) -> Self {
        Self {
            title: s.title,
            description: s.description,
            steps: s.steps.into_iter().filter_map(Step::from_proto).collect(),
            schedules: s.schedules.into_iter().map(Into::into).collect(),
            max_execution_seconds: s.max_execution_seconds,
        }
    }
}

impl From<Schedule> for pb::Schedule {
    fn from(s: Schedule) -> Self {
        Self { id: s.id, cron: s.cron, timezone: s.timezone, enabled: s.enabled }
    }
}

impl From<pb::Schedule> for Schedule {
    fn from(s: pb::Schedule) -> Self {
        Self { id: s.id, cron: s.cron, timezone: s.timezone, enabled: s.enabled }
    }
}

impl From<RetryPolicy> for pb::RetryPolicy {
    fn from(r: RetryPolicy) -> Self {
        Self {
            max_attempts: r.max_attempts,
            initial_backoff_ms: r.initial_backoff_ms,
            max_backoff_ms: r.max_backoff_ms,
        }
    }
}

impl From<pb::RetryPolicy> for RetryPolicy {
    fn from(r: pb::RetryPolicy) -> Self {
        Self {
            max_attempts: r.max_attempts,
            initial_backoff_ms: r.initial_backoff_ms,
            max_backoff_ms: r.max_backoff_ms,
        }
    }
}

fn ai_task(t: Option<AiTask>) -> pb::AiTask {
    match t {
        None => pb::AiTask::Unspecified,
        Some(AiTask::Summarize) => pb::AiTask::Summarize,
        Some(AiTask::Classify) => pb::AiTask::Classify,
        Some(AiTask::Extract) => pb::AiTask::Extract,
        Some(AiTask::Generate) => pb::AiTask::Generate,
    }
}

fn from_ai_task(t: pb::AiTask) -> Option<AiTask> {
    match t {
        pb::AiTask::Unspecified => None,
        pb::AiTask::Summarize => Some(AiTask::Summarize),
        pb::AiTask::Classify => Some(AiTask::Classify),
        pb::AiTask::Extract => Some(AiTask::Extract),
        pb::AiTask::Generate => Some(AiTask::Generate),
    }
}

fn http_method(m: Option<HttpMethod>) -> pb::HttpMethod {
    match m {
        None => pb::HttpMethod::Unspecified,
        Some(HttpMethod::Get) => pb::HttpMethod::Get,
        Some(HttpMethod::Post) => pb::HttpMethod::Post,
        Some(HttpMethod::Put) => pb::HttpMethod::Put,
        Some(HttpMethod::Patch) => pb::HttpMethod::Patch,
        Some(HttpMethod::Delete) => pb::HttpMethod::Delete,
    }
}

fn from_http_method(m: pb::HttpMethod) -> Option<HttpMethod> {
    match m {
        pb::HttpMethod::Unspecified => None,
        pb::HttpMethod::Get => Some(HttpMethod::Get),
        pb::HttpMethod::Post => Some(HttpMethod::Post),
        pb::HttpMethod::Put => Some(HttpMethod::Put),
        pb::HttpMethod::Patch => Some(HttpMethod::Patch),
        pb::HttpMethod::Delete => Some(HttpMethod::Delete),
    }
}

fn on_false(o: Option<OnFalse>) -> pb::OnFalse {
    match o {
        None => pb::OnFalse::Unspecified,
        Some(OnFalse::Stop) => pb::OnFalse::Stop,
        Some(OnFalse::Jump) => pb::OnFalse::Jump,
    }
}

fn from_on_false(o: pb::OnFalse) -> Option<OnFalse> {
    match o {
        pb::OnFalse::Unspecified => None,
        pb::OnFalse::Stop => Some(OnFalse::Stop),
        pb::OnFalse::Jump => Some(OnFalse::Jump),
    }
}

impl From<StepKind> for Kind {
    fn from(kind: StepKind) -> Self {
        match kind {
            StepKind::Ai(a) => Kind::Ai(pb::AiStep {
                task: ai_task(a.task) as i32,
                input: a.input,
                labels: a.labels,
                fields: a.fields,
                prompt: a.prompt,
                model: a.model,
                max_tokens: a.max_tokens,
                connector: a.connector,
            }),
            StepKind::Slack(c) => Kind::Slack(pb::SlackStep { connector: c.connector, text: c.text }),
            StepKind::Email(e) => Kind::Email(pb::EmailStep {
                connector: e.connector,
                from: e.from,
                to: e.to,
                subject: e.subject,
                html: e.html,
                text: e.text,
            }),
            StepKind::Http(h) => Kind::Http(pb::HttpStep {
                method: http_method(h.method) as i32,
                url: h.url,
                headers: h
                    .headers
                    .into_iter()
                    .map(|h| pb::HttpHeaderTemplate { name: h.name, value: h.value })
                    .collect(),
                body: h.body,
                bearer_connector: h.bearer_connector,
            }),
            StepKind::Transform(t) => Kind::Transform(pb::TransformStep { template: t.template }),
            StepKind::Condition(c) => Kind::Condition(pb::ConditionStep {
                expression: c.expression,
                on_false: on_false(c.on_false) as i32,
                jump_to: c.jump_to,
            }),
            StepKind::Approval(a) => Kind::Approval(pb::ApprovalStep {
                message: a.message,
                expires_after_seconds: a.expires_after_seconds,
            }),
        }
    }
}

impl From<Kind> for StepKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Ai(a) => StepKind::Ai(AiConfig {
                task: from_ai_task(a.task()),
                input: a.input,
                labels: a.labels,
                fields: a.fields,
                prompt: a.prompt,
                model: a.model,
                max_tokens: a.max_tokens,
                connector: a.connector,
            }),
            Kind::Slack(c) => StepKind::Slack(SlackConfig { connector: c.connector, text: c.text }),
            Kind::Email(e) => StepKind::Email(EmailConfig {
                connector: e.connector,
                from: e.from,
                to: e.to,
                subject: e.subject,
                html: e.html,
                text: e.text,
            }),
            Kind::Http(h) => StepKind::Http(HttpConfig {
                method: from_http_method(h.method()),
                url: h.url,
                headers: h.headers.into_iter().map(|h| HttpHeader { name: h.name, value: h.value }).collect(),
                body: h.body,
                bearer_connector: h.bearer_connector,
            }),
            Kind::Transform(t) => StepKind::Transform(TransformConfig { template: t.template }),
            Kind::Condition(c) => StepKind::Condition(ConditionConfig {
                on_false: from_on_false(c.on_false()),
                expression: c.expression,
                jump_to: c.jump_to,
            }),
            Kind::Approval(a) => StepKind::Approval(ApprovalConfig {
                message: a.message,
                expires_after_seconds: a.expires_after_seconds,
            }),
        }
    }
}

impl From<Step> for pb::Step {
    fn from(s: Step) -> Self {
        Self {
            key: s.key,
            name: s.name,
            kind: Some(s.kind.into()),
            requires_approval: s.requires_approval,
            timeout_ms: s.timeout_ms,
            retry: s.retry.map(Into::into),
        }
    }
}

impl Step {
    /// The JSON form of a stored step (`None` for a step without a kind, which
    /// the catalog never stores).
    pub fn from_proto(s: pb::Step) -> Option<Self> {
        Some(Self {
            kind: s.kind?.into(),
            key: s.key,
            name: s.name,
            requires_approval: s.requires_approval,
            timeout_ms: s.timeout_ms,
            retry: s.retry.map(Into::into),
        })
    }

    /// The first choice this step leaves unset (`ai.task`, `http.method`,
    /// `condition.on_false`), if any.
    pub fn missing_choice(&self) -> Option<&'static str> {
        match &self.kind {
            StepKind::Ai(a) if a.task.is_none() => Some("ai.task"),
            StepKind::Http(h) if h.method.is_none() => Some("http.method"),
            StepKind::Condition(c) if c.on_false.is_none() => Some("condition.on_false"),
            _ => None,
        }
    }
}
