//! Approval policy: who may approve an approval request, and which requests
//! the host approves automatically. Policies are written in the
//! [Cedar](https://docs.cedarpolicy.com) authorization language and checked
//! against [`SCHEMA_TEXT`] when loaded, so typos are reported with
//! `file:line:column` before any request is decided.
//!
//! # Model
//!
//! Everything lives in the namespace `Reagent`:
//!
//! - **Principal** (who approves):
//!   - `Reagent::User::"<os user>"`: a human operator. Attribute `name: String`
//!     (the OS user name again, so it can be compared with strings).
//!   - `Reagent::Auto::"policy"`: the host's automatic approver (the only id).
//!     It has no attributes: guard with `principal is Reagent::User` before
//!     reading `principal.name`.
//! - **Action**: only `Reagent::Action::"approve"`. Rejecting a request is
//!   always allowed (denying is safe), so it is not governed by policy.
//! - **Resource**: `Reagent::Request::"<request id>"`, with attributes
//!   `kind: String` (`"plan"`, `"budget-increase"`, `"out-of-space"`,
//!   `"escalation"`, `"strategy-change"`), `campaign: Long`,
//!   `campaign_name: String`, `cpu_minutes: Long`, `gpu_minutes: Long`
//!   (compute the request would allow spending), `max_trials: Long`,
//!   `requested_by: String` (`"agent"` or an OS user), `planned_by: String`
//!   (the OS user who registered the campaign), `tags: Set<String>`
//!   (`"key=value"`), `strategies: Set<String>` (e.g. `"builtin:three-phase"`
//!   or a file path), `grants: Set<String>` (capabilities granted to
//!   strategies, e.g. `"llm"`).
//!
//! A request is **approved automatically** when the policy permits
//! `Reagent::Auto::"policy"` to approve it; a **human may approve** it when the
//! policy permits `Reagent::User::"<name>"`. Cedar semantics apply: nothing is
//! allowed unless some `permit` matches, and any matching `forbid` overrides
//! every `permit`. An empty policy file therefore denies everything.
//! Annotate policies with `@id("...")`: that name is reported as the reason
//! for a decision. Without a policy file, [`Policy::DEFAULT_TEXT`] applies.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{
    AuthorizationError, Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicyId, PolicySet, Request, RestrictedExpression, Schema, ValidationMode,
    Validator,
};
use miette::Diagnostic;

/// Cedar schema (`.cedarschema` syntax) every policy is validated against.
pub const SCHEMA_TEXT: &str = r#"namespace Reagent {
  // A human operator; `name` is the OS user name (same as the entity id).
  entity User = { name: String };
  // The host's automatic approver: its only id is "policy".
  entity Auto enum ["policy"];
  // An approval request.
  entity Request = {
    kind: String, campaign: Long, campaign_name: String,
    cpu_minutes: Long, gpu_minutes: Long, max_trials: Long,
    requested_by: String, planned_by: String,
    tags: Set<String>, strategies: Set<String>, grants: Set<String>,
  };
  action approve appliesTo { principal: [User, Auto], resource: Request };
}
"#;

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    Schema::from_cedarschema_str(SCHEMA_TEXT)
        .map(|(schema, _warnings)| schema)
        .expect("embedded SCHEMA_TEXT is valid")
});

/// Who is asking to approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A human, by OS user name (`Reagent::User::"<name>"`).
    User(String),
    /// The host's automatic approver (`Reagent::Auto::"policy"`).
    Auto,
}

/// The facts about one approval request the policy may look at; each field
/// becomes the attribute of the same name on the `Reagent::Request` entity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// Request id (the entity id, as decimal text).
    pub id: u64,
    /// `"plan"`, `"budget-increase"`, `"out-of-space"`, `"escalation"` or `"strategy-change"`.
    pub kind: String,
    /// Campaign id.
    pub campaign: u64,
    /// Campaign name.
    pub campaign_name: String,
    /// CPU compute this request would allow spending, in minutes (rounded up).
    pub cpu_minutes: i64,
    /// GPU compute this request would allow spending, in minutes (rounded up).
    pub gpu_minutes: i64,
    /// Maximum number of trials.
    pub max_trials: i64,
    /// `"agent"` or the OS user name that made the request.
    pub requested_by: String,
    /// The OS user who registered the campaign.
    pub planned_by: String,
    /// Campaign tags, `"key=value"`.
    pub tags: Vec<String>,
    /// Strategies, e.g. `"builtin:three-phase"` or a file path.
    pub strategies: Vec<String>,
    /// Capability names granted to strategies, e.g. `"llm"`.
    pub grants: Vec<String>,
}

/// Outcome of [`Policy::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the principal may approve the request.
    pub allowed: bool,
    /// The policies that decided it (their `@id("...")` annotation, else
    /// Cedar's id such as `policy0`), sorted, followed by evaluation errors as
    /// text. Empty when nothing matched (default deny).
    pub reasons: Vec<String>,
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("{path}: cannot read policy file: {source}")]
    Read {
        /// The file path.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// Parse or schema-validation problems, each `"<origin>:<line>:<col>: <message>"`.
    #[error("{}", problems.join("\n"))]
    Invalid {
        /// One located message per problem.
        problems: Vec<String>,
    },
}

/// A parsed, schema-validated approval policy.
#[derive(Debug, Clone)]
pub struct Policy {
    set: PolicySet,
    text: String,
    origin: String,
}

impl Policy {
    /// The policy used when the workspace has no policy file: any operator may
    /// approve any request; nothing is approved automatically.
    pub const DEFAULT_TEXT: &'static str = r#"// Reagent approval policy, in the Cedar language (https://docs.cedarpolicy.com).
// Principals: Reagent::User::"<os user>" (attribute `name`) and
// Reagent::Auto::"policy" (automatic approval). Action: Reagent::Action::"approve".
// Resource: Reagent::Request, with attributes kind, campaign, campaign_name,
// cpu_minutes, gpu_minutes, max_trials, requested_by, planned_by, tags,
// strategies, grants. Nothing is allowed unless a `permit` matches; a matching
// `forbid` always wins. `@id` names the rule in decisions.

// Any operator may approve any request. Nothing is approved automatically.
@id("operators-approve")
permit (principal is Reagent::User, action == Reagent::Action::"approve", resource);

// Examples: uncomment and adapt.
//
// Small CPU-only plans are approved automatically:
// @id("auto-small-cpu-plans")
// permit (principal == Reagent::Auto::"policy", action == Reagent::Action::"approve", resource)
// when { resource.kind == "plan" && resource.cpu_minutes <= 120 && resource.gpu_minutes == 0 };
//
// Any GPU spend needs a human (forbid beats every permit):
// @id("gpu-needs-human")
// forbid (principal == Reagent::Auto::"policy", action, resource)
// when { resource.gpu_minutes > 0 };
//
// Budget increases must be approved by someone other than the campaign's planner:
// @id("four-eyes-budget")
// forbid (principal is Reagent::User, action, resource)
// when { resource.kind == "budget-increase" && principal.name == resource.planned_by };
"#;

    /// The policy built from [`Policy::DEFAULT_TEXT`].
    pub fn default_policy() -> Policy {
        Self::parse(Self::DEFAULT_TEXT, "<default policy>").expect("DEFAULT_TEXT is valid")
    }

    /// Parses `text` and validates it (strict mode) against [`SCHEMA_TEXT`].
    /// `origin` (usually the file path) prefixes every error message.
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let set = PolicySet::from_str(text).map_err(|errs| PolicyError::Invalid {
            problems: errs.iter().map(|e| locate(e, text, origin, None)).collect(),
        })?;
        let result = Validator::new(SCHEMA.clone()).validate(&set, ValidationMode::Strict);
        let problems: Vec<String> = result
            .validation_errors()
            .map(|e| {
                let fallback = (set.policy(e.policy_id())).and_then(|p| text.find(&p.to_string()));
                rename(&set, e.policy_id(), locate(e, text, origin, fallback))
            })
            .collect();
        if !problems.is_empty() {
            return Err(PolicyError::Invalid { problems });
        }
        Ok(Policy {
            set,
            text: text.to_owned(),
            origin: origin.to_owned(),
        })
    }

    /// Reads and parses the policy file at `path`.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: origin.clone(),
            source,
        })?;
        Self::parse(&text, &origin)
    }

    /// The policy text, as loaded.
    pub fn source(&self) -> &str {
        &self.text
    }

    /// Where the policy came from (file path, or `<default policy>`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// May `who` approve the request described by `facts`?
    pub fn decide(&self, who: &Principal, facts: &RequestFacts) -> Verdict {
        // Building the request can only fail on host bugs; deny, and say why.
        (self.authorize(who, facts)).unwrap_or_else(|e| Verdict {
            allowed: false,
            reasons: vec![e],
        })
    }

    fn authorize(&self, who: &Principal, facts: &RequestFacts) -> Result<Verdict, String> {
        let schema: &Schema = &SCHEMA;
        let (principal, attrs) = match who {
            Principal::User(name) => {
                let name_attr = RestrictedExpression::new_string(name.clone());
                (
                    uid("User", name)?,
                    HashMap::from([("name".to_owned(), name_attr)]),
                )
            }
            Principal::Auto => (uid("Auto", "policy")?, HashMap::new()),
        };
        let resource = uid("Request", &facts.id.to_string())?;
        let entities = [
            Entity::new(principal.clone(), attrs, HashSet::new()).map_err(msg)?,
            Entity::new(resource.clone(), request_attrs(facts), HashSet::new()).map_err(msg)?,
        ];
        let entities = Entities::from_entities(entities, Some(schema)).map_err(msg)?;
        let action = uid("Action", "approve")?;
        let request = Request::new(principal, action, resource, Context::empty(), Some(schema))
            .map_err(msg)?;
        let response = Authorizer::new().is_authorized(&request, &self.set, &entities);
        let mut reasons: Vec<String> = (response.diagnostics().reason())
            .map(|id| display_id(&self.set, id))
            .collect();
        reasons.sort();
        reasons.extend(response.diagnostics().errors().map(|e| {
            let AuthorizationError::PolicyEvaluationError(inner) = e;
            rename(&self.set, inner.policy_id(), e.to_string())
        }));
        let allowed = response.decision() == Decision::Allow;
        Ok(Verdict { allowed, reasons })
    }
}

/// The `@id` annotation of policy `id`, else its Cedar id.
fn display_id(set: &PolicySet, id: &PolicyId) -> String {
    set.annotation(id, "id")
        .map_or_else(|| id.to_string(), str::to_owned)
}

/// Replaces the Cedar id `policy0` in a message by the policy's `@id`.
fn rename(set: &PolicySet, id: &PolicyId, message: String) -> String {
    message.replace(&format!("`{id}`"), &format!("`{}`", display_id(set, id)))
}

fn msg(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn uid(ty: &str, id: &str) -> Result<EntityUid, String> {
    let ty = EntityTypeName::from_str(&format!("Reagent::{ty}")).map_err(msg)?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
}

fn request_attrs(f: &RequestFacts) -> HashMap<String, RestrictedExpression> {
    let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
    let set = |v: &[String]| RestrictedExpression::new_set(v.iter().map(|s| string(s)));
    let long = RestrictedExpression::new_long;
    let id = |n: u64| long(i64::try_from(n).unwrap_or(i64::MAX));
    HashMap::from([
        ("kind".to_owned(), string(&f.kind)),
        ("campaign".to_owned(), id(f.campaign)),
        ("campaign_name".to_owned(), string(&f.campaign_name)),
        ("cpu_minutes".to_owned(), long(f.cpu_minutes)),
        ("gpu_minutes".to_owned(), long(f.gpu_minutes)),
        ("max_trials".to_owned(), long(f.max_trials)),
        ("requested_by".to_owned(), string(&f.requested_by)),
        ("planned_by".to_owned(), string(&f.planned_by)),
        ("tags".to_owned(), set(&f.tags)),
        ("strategies".to_owned(), set(&f.strategies)),
        ("grants".to_owned(), set(&f.grants)),
    ])
}

/// Formats one diagnostic as `origin:line:col: message`, locating it by its
/// first label, else by `fallback` (a byte offset), else `origin: message`.
fn locate(d: &dyn Diagnostic, text: &str, origin: &str, fallback: Option<usize>) -> String {
    let label = d.labels().and_then(|mut labels| labels.next());
    let mut message = d.to_string();
    if let Some(note) = label.as_ref().and_then(|l| l.label()) {
        message = format!("{message} ({note})");
    }
    if let Some(help) = d.help() {
        message = format!("{message}; help: {help}");
    }
    match label.map(|l| l.offset()).or(fallback) {
        Some(offset) => {
            let (line, col) = line_col(text, offset);
            format!("{origin}:{line}:{col}: {message}")
        }
        None => format!("{origin}: {message}"),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commented-out examples of DEFAULT_TEXT, uncommented: keeps the
    /// user-facing documentation honest.
    fn example_policy() -> Policy {
        let (_, examples) = Policy::DEFAULT_TEXT.split_once("// Examples:").unwrap();
        // Uncomment the Cedar lines; prose lines start with a capital letter.
        let text: String = (examples.lines().filter_map(|l| l.strip_prefix("// ")))
            .filter(|l| !l.starts_with(char::is_uppercase))
            .map(|l| format!("{l}\n"))
            .collect();
        Policy::parse(&text, "example.cedar").unwrap_or_else(|e| panic!("{e}"))
    }

    fn user(name: &str) -> Principal {
        Principal::User(name.to_owned())
    }

    fn verdict(allowed: bool, reasons: &[&str]) -> Verdict {
        let reasons = reasons.iter().map(|r| r.to_string()).collect();
        Verdict { allowed, reasons }
    }

    fn facts(kind: &str, cpu_minutes: i64, gpu_minutes: i64) -> RequestFacts {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        RequestFacts {
            id: 7,
            kind: kind.to_owned(),
            campaign: 3,
            campaign_name: "sweep".to_owned(),
            cpu_minutes,
            gpu_minutes,
            max_trials: 20,
            requested_by: "agent".to_owned(),
            planned_by: "alice".to_owned(),
            tags: strings(&["team=vision"]),
            strategies: strings(&["builtin:three-phase"]),
            grants: strings(&["llm"]),
        }
    }

    /// The error text of an invalid policy.
    fn invalid(text: &str) -> String {
        match Policy::parse(text, "policy.cedar") {
            Err(e @ PolicyError::Invalid { .. }) => e.to_string(),
            other => panic!("expected a policy error, got {other:?}"),
        }
    }

    #[test]
    fn default_permits_users_and_denies_auto() {
        let (p, plan) = (Policy::default_policy(), facts("plan", 10, 0));
        let yes = verdict(true, &["operators-approve"]);
        assert_eq!(p.decide(&user("alice"), &plan), yes);
        assert_eq!(p.decide(&Principal::Auto, &plan), verdict(false, &[]));
        assert_eq!(p.source(), Policy::DEFAULT_TEXT);
    }

    #[test]
    fn example_policy_decisions() {
        let p = example_policy();
        let auto = |kind, cpu, gpu| p.decide(&Principal::Auto, &facts(kind, cpu, gpu));
        assert_eq!(
            auto("plan", 120, 0),
            verdict(true, &["auto-small-cpu-plans"])
        );
        assert_eq!(auto("plan", 121, 0), verdict(false, &[]));
        assert_eq!(auto("budget-increase", 10, 0), verdict(false, &[]));
        assert_eq!(auto("plan", 10, 1), verdict(false, &["gpu-needs-human"]));
        // The examples have no permit for users: add one (no @id), keep the forbids.
        let extra = "permit (principal is Reagent::User, action, resource);";
        let p = Policy::parse(&format!("{}{extra}", p.source()), "example.cedar").unwrap();
        let human = |name, kind| p.decide(&user(name), &facts(kind, 600, 60));
        assert_eq!(
            human("alice", "budget-increase"),
            verdict(false, &["four-eyes-budget"])
        );
        assert_eq!(human("bob", "budget-increase"), verdict(true, &["policy3"]));
        assert_eq!(human("alice", "plan"), verdict(true, &["policy3"]));
    }

    #[test]
    fn set_attributes_are_visible() {
        let text = r#"permit (principal == Reagent::Auto::"policy", action, resource)
            when { resource.tags.contains("team=vision") && !resource.grants.contains("llm") };"#;
        let (p, mut f) = (Policy::parse(text, "t.cedar").unwrap(), facts("plan", 1, 0));
        assert!(!p.decide(&Principal::Auto, &f).allowed);
        f.grants.clear();
        assert!(p.decide(&Principal::Auto, &f).allowed);
    }

    #[test]
    fn forbid_beats_permit() {
        let text = "@id(\"all\") permit (principal, action, resource);\n\
            @id(\"no-bob\") forbid (principal == Reagent::User::\"bob\", action, resource);";
        let (p, plan) = (Policy::parse(text, "t.cedar").unwrap(), facts("plan", 1, 0));
        assert_eq!(p.decide(&user("bob"), &plan), verdict(false, &["no-bob"]));
        assert_eq!(p.decide(&Principal::Auto, &plan), verdict(true, &["all"]));
    }

    #[test]
    fn evaluation_errors_deny_and_are_reported() {
        let text = "@id(\"big\") permit (principal, action, resource)\n\
            when { resource.cpu_minutes * 4611686018427387904 > 0 };";
        let p = Policy::parse(text, "t.cedar").unwrap();
        let v = p.decide(&user("a"), &facts("plan", 9, 0));
        assert!(!v.allowed && v.reasons.len() == 1, "{v:?}");
        let reason = &v.reasons[0];
        assert!(
            reason.contains("`big`") && reason.contains("overflow"),
            "{v:?}"
        );
    }

    #[test]
    fn syntax_error_is_located() {
        let e = invalid(
            "// p\npermit (principal, action, resource);\npermit (principal, action resource);",
        );
        assert!(
            e.starts_with("policy.cedar:3:27: unexpected token `resource`"),
            "{e}"
        );
    }

    #[test]
    fn schema_errors_are_located() {
        let e = invalid(
            "@id(\"small\")\npermit (principal, action, resource)\nwhen { resource.cpu_minuts };",
        );
        assert!(
            e.starts_with("policy.cedar:3:8:") && e.contains("`small`"),
            "{e}"
        );
        assert!(e.contains("did you mean `cpu_minutes`?"), "{e}");
        let e = invalid("permit (principal, action, resource)\nwhen { resource.kind == 3 };");
        assert!(e.starts_with("policy.cedar:2:8:"), "{e}");
        let e = invalid("permit (principal == Reagent::Auto::\"polcy\", action, resource);");
        assert!(e.starts_with("policy.cedar:1:22:"), "{e}");
        // Every problem is reported, one per line.
        let e = invalid(
            "permit (principal, action, resource) when { resource.a };\n\
            permit (principal, action, resource) when { principal.name == \"x\" };",
        );
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 2, "{e}");
        assert!(lines[0].starts_with("policy.cedar:1:45:"), "{e}");
        assert!(lines[1].starts_with("policy.cedar:2:45:"), "{e}");
        assert!(lines[1].contains("`Reagent::Auto` not found"), "{e}");
    }

    #[test]
    fn empty_policy_denies_everything() {
        for text in ["", "// nothing here\n"] {
            let (p, plan) = (
                Policy::parse(text, "policy.cedar").unwrap(),
                facts("plan", 1, 0),
            );
            assert_eq!(p.decide(&user("alice"), &plan), verdict(false, &[]));
            assert_eq!(p.decide(&Principal::Auto, &plan), verdict(false, &[]));
        }
    }

    #[test]
    fn load_reports_path() {
        let e = Policy::load(Path::new("/nonexistent/policy.cedar")).unwrap_err();
        let prefix = "/nonexistent/policy.cedar: cannot read policy file:";
        assert!(e.to_string().starts_with(prefix), "{e}");
        let dir = std::env::temp_dir();
        let path = dir.join(format!("reagent-policy-{}.cedar", std::process::id()));
        let text = "permit (principal, action, resource)\nwhen { resource.no };";
        std::fs::write(&path, text).unwrap();
        let e = Policy::load(&path).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(e.starts_with(&format!("{}:2:8:", path.display())), "{e}");
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncé d", 7), (2, 4));
        assert_eq!(line_col("", 5), (1, 1));
    }
}
