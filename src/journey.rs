//! Match: which journey a span belongs to, which cohort, and how it went.
//!
//! Configured journeys are tried in file order and the first match wins. With
//! auto-derivation on, an entry-point span (SERVER or CONSUMER) that no configured
//! journey claims becomes the journey `{service.name}:{span name}`, up to a limit
//! past which such spans share the journey [`AUTO_OVERFLOW`].

use crate::config::{Config, JourneyConfig};
use crate::experience::config::ExperienceConfig;
use crate::experience::{read_event, EventUse};
use crate::predicate::{Cond, StrMatch};
use crate::span::{attr_keys, clip, AttrKey, SpanView, MAX_LABEL_VALUE_BYTES};
use crate::span_record::{flag, JourneyId};
use crate::users::UserKeys;
use crate::value::{Value, ValueRule};
use dashmap::DashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub const AUTO_OVERFLOW: &str = "_overflow";

/// What the record and export stages need to know of a journey.
#[derive(Debug)]
pub struct JourneyInfo {
    pub id: JourneyId,
    pub name: Arc<str>,
    pub weight: f64,
    pub latency_threshold_ns: u64,
    /// Attribute keys whose values split the journey into series.
    pub cohort_keys: Arc<[String]>,
    /// The same keys as Prometheus label names.
    pub cohort_labels: Arc<[String]>,
    pub auto: bool,
    pub objectives: crate::config::Objectives,
    /// Whether a correctness rule exists; without one the correctness SLI has no data.
    pub has_correctness: bool,
    /// Whether the journey has operational signals, hence an operations SLI.
    pub has_operations: bool,
    /// Whether the journey takes its request counts from OTLP metrics
    /// ([`crate::metric_requests`]); its spans then give users, value and coverage only.
    pub has_metrics: bool,
    /// Metric inputs and no span rule: no spans, so no coverage ratio either.
    pub metrics_only: bool,
    /// A hash of the journey's identity (its name, or service and span name when
    /// derived) that stays the same across config reloads, unlike `id`.
    pub seed: u64,
    pub origin: Origin,
    /// Whether the journey has a value rule, and its currency label.
    pub value: Option<ValueLabel>,
    /// Event names counted as frustrations (the `event` label), in config order.
    pub frustration_events: Arc<[String]>,
}

impl JourneyInfo {
    /// The service of a journey derived by `auto_journeys` (its name is
    /// `{service}:{span}`): what the Kafka partials carry so an owner splits the name
    /// where it was joined ([`Journeys::adopt`]).
    pub fn derived_service(&self) -> Option<&str> {
        match &self.origin {
            Origin::Derived { service, .. } => Some(service),
            _ => None,
        }
    }
}

/// What the exporters show of a journey's value rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueLabel {
    pub currency: Option<Arc<str>>,
}

/// Where a journey comes from. The SLO checkpoint keeps it, so that after a restart a
/// derived journey can be shown again (and counted towards `auto_journeys.max`) before
/// its traffic returns, while a journey since removed from the config is not.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Defined in the config (checkpoints written before origins were kept read as this).
    #[default]
    Configured,
    /// Derived from an entry-point span: `{service}:{span}`.
    Derived { service: Box<str>, span: Box<str> },
    /// [`AUTO_OVERFLOW`], shared by derived journeys past `auto_journeys.max`.
    AutoOverflow,
}

struct Compiled {
    info: Arc<JourneyInfo>,
    /// `info.cohort_keys` with their filter bits, for the per-span lookups.
    cohort_keys: Box<[AttrKey]>,
    matcher: Cond,
    /// Set when `matcher` requires one exact span name: most spans fail it on two integer
    /// compares instead of a full `Cond::eval`.
    name_gate: Option<NameGate>,
    failure: Cond,
    incorrect: Option<Cond>,
    value: Option<ValueRule>,
    experience: ExperienceConfig,
    completion: Option<CompiledCompletion>,
    /// Everything that decides what the journey records; equal fingerprints across a
    /// reload mean its window state stays valid.
    fingerprint: String,
}

/// A span name's length and first 8 bytes (zero-padded): equal for equal names, so a
/// difference in either proves the names differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NameGate {
    len: usize,
    head: u64,
}

impl NameGate {
    #[inline]
    fn of_name(name: &[u8]) -> NameGate {
        let head = match name.first_chunk::<8>() {
            Some(w) => u64::from_le_bytes(*w),
            None => {
                let mut w = [0u8; 8];
                for (d, s) in w.iter_mut().zip(name) {
                    *d = *s;
                }
                u64::from_le_bytes(w)
            }
        };
        NameGate {
            len: name.len(),
            head,
        }
    }

    /// The gate of a matcher that holds only for one exact span name: `span_name` with a
    /// single value, alone or inside `all` (nested `all`s included). `one_of`, regexes,
    /// `any` and `not` get none, as a name outside the gate could still match them.
    fn of_matcher(c: &Cond) -> Option<NameGate> {
        match c {
            Cond::SpanName(StrMatch::Exact(s)) => Some(NameGate::of_name(s.as_bytes())),
            Cond::All(cs) => cs.iter().find_map(NameGate::of_matcher),
            _ => None,
        }
    }
}

impl Compiled {
    /// `matcher.eval`, with the name gate tried first.
    #[inline]
    fn matches<S: SpanView + ?Sized>(&self, span: &S, name: NameGate) -> bool {
        if let Some(g) = self.name_gate {
            if g != name {
                return false;
            }
        }
        self.matcher.eval(span)
    }
}

pub struct Journeys {
    configured: Vec<Compiled>,
    auto: Option<AutoTable>,
    missing_value: String,
    /// `deployments.version_key`: the attribute naming the version a span ran on.
    version_key: AttrKey,
    users: UserKeys,
    /// Bumped by every reload; batches carry it so workers know which ids they hold.
    pub generation: u64,
}

fn identity_hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(1, 2, 3, 4)
}

/// (service name, span name, journey id) of a derived journey.
type AutoEntry = (Box<str>, Box<str>, JourneyId);

struct AutoTable {
    max: usize,
    /// Hash of (service, span name) to the journeys with that hash; no allocation on a hit.
    by_hash: DashMap<u64, Vec<AutoEntry>>,
    by_id: DashMap<JourneyId, Arc<JourneyInfo>>,
    count: AtomicUsize,
    next_id: AtomicUsize,
    overflow: Arc<JourneyInfo>,
    failure: Cond,
    threshold_ns: u64,
    cohort_keys: Arc<[String]>,
    /// `cohort_keys` with their filter bits.
    cohort_attr_keys: Box<[AttrKey]>,
    cohort_labels: Arc<[String]>,
    objectives: crate::config::Objectives,
    hasher: ahash::RandomState,
}

/// Why an owner refuses the journey of a partial aggregate ([`Journeys::adopt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAdopted {
    /// Not configured here, and not one auto-derivation could have made (it is off, or
    /// the name is not `service:span`).
    Unknown,
    /// A derived journey, but this instance already holds `auto_journeys.max` of them.
    Full,
}

/// What one span or event does to its journey's attempts (`completion`): the hash of
/// its key's value, and whether it starts or completes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptStep {
    pub key: u64,
    pub start: bool,
    pub complete: bool,
    pub within_ns: u64,
}

/// A journey's compiled `completion`.
struct CompiledCompletion {
    start: Cond,
    complete: Cond,
    key: AttrKey,
    within_ns: u64,
}

impl CompiledCompletion {
    fn step<S: SpanView + ?Sized>(&self, span: &S) -> Option<AttemptStep> {
        let start = self.start.eval(span);
        let complete = self.complete.eval(span);
        if !start && !complete {
            return None;
        }
        // Keys are strings (session ids); other values are written out to hash.
        let key = match span.attr_key(&self.key)? {
            crate::span::AttrValue::Str(k) => identity_hasher().hash_one(k),
            other => {
                let mut text = String::new();
                other.write_to(&mut text);
                identity_hasher().hash_one(text.as_str())
            }
        };
        Some(AttemptStep {
            key,
            start,
            complete,
            within_ns: self.within_ns,
        })
    }
}

/// The journey a span was matched to and how it went.
pub struct Classified<'a> {
    pub journey: JourneyId,
    /// The journey's [`JourneyInfo::seed`].
    pub seed: u64,
    pub cohort_keys: &'a [AttrKey],
    pub flags: u8,
    /// The hash of the span's user id ([`crate::users`]), when it names one.
    pub user: Option<u64>,
    /// The request's value, when the journey has a value rule.
    pub value: Value,
    /// What the span or event does to the journey's attempts, if it has `completion`.
    pub attempt: Option<AttemptStep>,
}

fn labels_of(keys: &[String]) -> Arc<[String]> {
    keys.iter()
        .map(|k| crate::labels::sanitize_label(k))
        .collect()
}

impl Journeys {
    pub fn new(cfg: &Config) -> Journeys {
        let configured: Vec<Compiled> = cfg
            .journeys
            .iter()
            .enumerate()
            .map(|(i, j): (usize, &JourneyConfig)| Compiled {
                cohort_keys: attr_keys(&j.cohorts),
                info: Arc::new(JourneyInfo {
                    id: i as JourneyId,
                    name: Arc::from(j.name.as_str()),
                    weight: j.weight,
                    latency_threshold_ns: j.latency_threshold.as_nanos() as u64,
                    cohort_keys: j.cohorts.iter().cloned().collect(),
                    cohort_labels: labels_of(&j.cohorts),
                    auto: false,
                    objectives: j.objectives,
                    has_correctness: if j.metrics.is_empty() {
                        j.incorrect.is_some()
                    } else {
                        j.metrics.iter().any(|m| m.has_correctness())
                    },
                    has_operations: !j.signals.is_empty(),
                    has_metrics: !j.metrics.is_empty(),
                    metrics_only: matches!(&j.matcher, Cond::Any(v) if v.is_empty()),
                    seed: identity_hasher().hash_one(j.name.as_str()),
                    origin: Origin::Configured,
                    value: j.value.as_ref().map(|v| ValueLabel {
                        currency: v.currency.as_deref().map(Arc::from),
                    }),
                    frustration_events: j.experience.frustration_events.iter().cloned().collect(),
                }),
                matcher: j.matcher.clone(),
                name_gate: NameGate::of_matcher(&j.matcher),
                failure: j.failure.clone(),
                incorrect: j.incorrect.clone(),
                value: j.value.clone(),
                experience: j.experience.clone(),
                completion: j.completion.as_ref().map(|c| CompiledCompletion {
                    start: c.start.clone(),
                    complete: c.complete.clone(),
                    key: AttrKey::new(&c.key),
                    within_ns: c.within.as_nanos() as u64,
                }),
                fingerprint: format!(
                    "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
                    j.matcher,
                    j.failure,
                    j.incorrect,
                    j.latency_threshold,
                    j.cohorts,
                    j.value,
                    (&j.experience, &j.completion),
                    j.metrics
                ),
            })
            .collect();
        let auto = cfg.auto_journeys.enabled.then(|| {
            let first_auto = configured.len();
            let cohort_keys: Arc<[String]> = cfg.cohorts.keys.iter().cloned().collect();
            let cohort_labels = labels_of(&cfg.cohorts.keys);
            let threshold_ns = cfg.defaults.latency_threshold.as_nanos() as u64;
            let overflow = Arc::new(JourneyInfo {
                id: first_auto as JourneyId,
                name: Arc::from(AUTO_OVERFLOW),
                weight: 1.0,
                latency_threshold_ns: threshold_ns,
                cohort_keys: cohort_keys.clone(),
                cohort_labels: cohort_labels.clone(),
                auto: true,
                objectives: cfg.slo.objectives,
                has_correctness: false,
                has_operations: false,
                has_metrics: false,
                metrics_only: false,
                seed: identity_hasher().hash_one(AUTO_OVERFLOW),
                origin: Origin::AutoOverflow,
                value: None,
                frustration_events: Arc::from([]),
            });
            let by_id = DashMap::new();
            by_id.insert(overflow.id, overflow.clone());
            AutoTable {
                max: cfg.auto_journeys.max,
                by_hash: DashMap::new(),
                by_id,
                count: AtomicUsize::new(0),
                next_id: AtomicUsize::new(first_auto + 1),
                overflow,
                failure: Cond::default_failure(),
                threshold_ns,
                cohort_keys,
                cohort_attr_keys: attr_keys(&cfg.cohorts.keys),
                cohort_labels,
                objectives: cfg.slo.objectives,
                hasher: identity_hasher(),
            }
        });
        Journeys {
            configured,
            auto,
            missing_value: cfg.cohorts.missing_value.clone(),
            version_key: AttrKey::new(&cfg.deployments.version_key),
            users: UserKeys::new(&cfg.users.keys),
            generation: 0,
        }
    }

    pub fn get(&self, id: JourneyId) -> Option<Arc<JourneyInfo>> {
        if let Some(c) = self.configured.get(id as usize) {
            return Some(c.info.clone());
        }
        self.auto
            .as_ref()
            .and_then(|a| a.by_id.get(&id).map(|e| e.value().clone()))
    }

    /// The configured journeys, in file order.
    pub fn configured(&self) -> impl Iterator<Item = &Arc<JourneyInfo>> {
        self.configured.iter().map(|c| &c.info)
    }

    pub fn missing_value(&self) -> &str {
        &self.missing_value
    }

    pub fn version_key(&self) -> &AttrKey {
        &self.version_key
    }

    /// Every attribute key any rule or cohort reads.
    pub fn attribute_keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.configured {
            c.matcher.attribute_keys(&mut out);
            c.failure.attribute_keys(&mut out);
            if let Some(i) = &c.incorrect {
                i.attribute_keys(&mut out);
            }
            for k in c.info.cohort_keys.iter() {
                if !out.contains(k) {
                    out.push(k.clone());
                }
            }
        }
        if let Some(a) = &self.auto {
            a.failure.attribute_keys(&mut out);
            for k in a.cohort_keys.iter() {
                if !out.contains(k) {
                    out.push(k.clone());
                }
            }
        }
        out
    }

    /// The first configured journey whose matcher the span satisfies.
    #[inline]
    fn find_configured<S: SpanView + ?Sized>(&self, span: &S) -> Option<&Compiled> {
        if self.configured.is_empty() {
            return None;
        }
        let name = NameGate::of_name(span.name().as_bytes());
        self.configured.iter().find(|c| c.matches(span, name))
    }

    /// Finds the span's journey and its outcome flags; `None` when no journey claims it.
    pub fn classify<'s, S: SpanView + ?Sized>(&'s self, span: &S) -> Option<Classified<'s>> {
        let entry = span.is_entry_point();
        let (journey, seed, cohort_keys, threshold_ns, failure, incorrect, value, completion) =
            match self.find_configured(span) {
                Some(c) => (
                    c.info.id,
                    c.info.seed,
                    &*c.cohort_keys,
                    c.info.latency_threshold_ns,
                    &c.failure,
                    c.incorrect.as_ref(),
                    c.value.as_ref(),
                    c.completion.as_ref(),
                ),
                None => {
                    let auto = self.auto.as_ref()?;
                    if !entry {
                        return None;
                    }
                    let (id, seed) = auto.lookup(
                        clip(span.service_name(), MAX_LABEL_VALUE_BYTES),
                        clip(span.name(), MAX_LABEL_VALUE_BYTES),
                    );
                    (
                        id,
                        seed,
                        &*auto.cohort_attr_keys,
                        auto.threshold_ns,
                        &auto.failure,
                        None,
                        None,
                        None,
                    )
                }
            };
        let mut flags = 0;
        if entry {
            flags |= flag::ENTRY;
        }
        if failure.eval(span) {
            flags |= flag::ERROR;
        }
        if incorrect.is_some_and(|c| c.eval(span)) {
            flags |= flag::INCORRECT;
        }
        if span.end_ns().saturating_sub(span.start_ns()) > threshold_ns {
            flags |= flag::SLOW;
        }
        Some(Classified {
            journey,
            seed,
            cohort_keys,
            flags,
            user: self.users.user_hash(span),
            value: value.map_or(Value::None, |v| v.read(span)),
            attempt: completion.and_then(|c| c.step(span)),
        })
    }

    /// Finds the journey of a log event (configured journeys only: events are never
    /// entry points) and what the event counts for there; `None` when no journey
    /// claims it. The flags are [`flag::EVENT`], with [`flag::USER`] handled by the
    /// caller and [`flag::FRUSTRATED`] for a frustration.
    pub fn classify_event<'s, S: SpanView + ?Sized>(
        &'s self,
        name: &str,
        event: &S,
    ) -> Option<(Classified<'s>, EventUse)> {
        let c = self.find_configured(event)?;
        let used = read_event(&c.experience, name, event);
        let mut flags = flag::EVENT;
        if matches!(used, EventUse::Frustration(_)) {
            flags |= flag::FRUSTRATED;
        }
        Some((
            Classified {
                journey: c.info.id,
                seed: c.info.seed,
                cohort_keys: &c.cohort_keys,
                flags,
                user: self.users.user_hash(event),
                value: Value::None,
                attempt: c.completion.as_ref().and_then(|x| x.step(event)),
            },
            used,
        ))
    }

    /// The journey a checkpoint names, as the current config has it: a configured journey
    /// by name (none if it was removed), a derived one made again (it counts towards
    /// `auto_journeys.max`; none past it or with auto-derivation off).
    pub fn restore(&self, name: &str, origin: &Origin) -> Option<Arc<JourneyInfo>> {
        match origin {
            Origin::Configured => self.configured().find(|j| &*j.name == name).cloned(),
            Origin::Derived { service, span } => {
                let auto = self.auto.as_ref()?;
                let (id, _) = auto.lookup(service, span);
                self.get(id).filter(|j| &*j.name == name)
            }
            Origin::AutoOverflow => self.auto.as_ref().map(|a| a.overflow.clone()),
        }
    }

    /// The journey a partial aggregate names, for its owner (Kafka stage 2): a configured
    /// journey by name; with auto-derivation on, [`AUTO_OVERFLOW`], or a derived journey
    /// `service:span` that a publisher derived from spans this instance may never have
    /// seen, made here as if derived (so it is bounded by `auto_journeys.max` together
    /// with the journeys this instance derives itself, and a checkpoint or changelog
    /// brings it back by its origin). `service`: the derived journey's service as the
    /// publisher sent it ([`JourneyInfo::derived_service`]), so the name splits after it
    /// whatever `:` either part holds; without it (an older publisher) the name is split
    /// at its first `:`, after looking for one this instance derived itself by name.
    pub fn adopt(&self, name: &str, service: Option<&str>) -> Result<Arc<JourneyInfo>, NotAdopted> {
        if let Some(j) = self.configured().find(|j| &*j.name == name) {
            return Ok(j.clone());
        }
        let auto = self.auto.as_ref().ok_or(NotAdopted::Unknown)?;
        if name == AUTO_OVERFLOW {
            return Ok(auto.overflow.clone());
        }
        let (service, span) = match service {
            Some(service) => name
                .strip_prefix(service)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(|span| (service, span))
                .ok_or(NotAdopted::Unknown)?,
            None => name.split_once(':').ok_or(NotAdopted::Unknown)?,
        };
        if service.len() > MAX_LABEL_VALUE_BYTES || span.len() > MAX_LABEL_VALUE_BYTES {
            // Publishers clip both parts: no derived journey has this name.
            return Err(NotAdopted::Unknown);
        }
        let known = auto.find(service, span).or_else(|| {
            auto.by_id
                .iter()
                .find(|e| &*e.value().name == name && e.value().id != auto.overflow.id)
                .map(|e| e.value().id)
        });
        let id = match known {
            Some(id) => id,
            None => auto.lookup(service, span).0,
        };
        self.get(id)
            .filter(|j| &*j.name == name)
            .ok_or(NotAdopted::Full)
    }

    /// The number of auto-derived journeys so far (not counting the overflow journey).
    pub fn auto_count(&self) -> usize {
        self.auto
            .as_ref()
            .map_or(0, |a| a.count.load(Ordering::Relaxed))
    }
}

impl AutoTable {
    /// The id of the journey `service:name` if it was made already.
    fn find(&self, service: &str, name: &str) -> Option<JourneyId> {
        let hash = self.hasher.hash_one((service, name));
        self.by_hash.get(&hash).and_then(|list| {
            list.iter()
                .find(|(s, n, _)| &**s == service && &**n == name)
                .map(|(_, _, id)| *id)
        })
    }

    /// The id and identity hash of the journey `service:name`, created on first sight.
    fn lookup(&self, service: &str, name: &str) -> (JourneyId, u64) {
        let hash = self.hasher.hash_one((service, name));
        let find = |list: &[(Box<str>, Box<str>, JourneyId)]| {
            list.iter()
                .find(|(s, n, _)| &**s == service && &**n == name)
                .map(|(_, _, id)| *id)
        };
        if let Some(id) = self.by_hash.get(&hash).and_then(|list| find(&list)) {
            return (id, hash);
        }
        let mut entry = self.by_hash.entry(hash).or_default();
        if let Some(id) = find(&entry) {
            return (id, hash);
        }
        if self.count.load(Ordering::Relaxed) >= self.max {
            return (self.overflow.id, self.overflow.seed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) as JourneyId;
        let info = Arc::new(JourneyInfo {
            id,
            name: Arc::from(format!("{service}:{name}")),
            weight: 1.0,
            latency_threshold_ns: self.threshold_ns,
            cohort_keys: self.cohort_keys.clone(),
            cohort_labels: self.cohort_labels.clone(),
            auto: true,
            objectives: self.objectives,
            has_correctness: false,
            has_operations: false,
            has_metrics: false,
            metrics_only: false,
            seed: hash,
            origin: Origin::Derived {
                service: service.into(),
                span: name.into(),
            },
            value: None,
            frustration_events: Arc::from([]),
        });
        // Insert into `by_id` first: a worker may see the id as soon as `entry` is released.
        self.by_id.insert(id, info);
        entry.push((service.into(), name.into(), id));
        (id, hash)
    }

    /// (service, span name, id) of every derived journey, in the order they were made.
    fn entries(&self) -> Vec<(Box<str>, Box<str>, JourneyId)> {
        let mut out: Vec<_> = self
            .by_hash
            .iter()
            .flat_map(|e| e.value().clone())
            .collect();
        out.sort_by_key(|(_, _, id)| *id);
        out
    }

    fn fingerprint(&self) -> (u64, &[String], usize) {
        (self.threshold_ns, &self.cohort_keys, self.max)
    }
}

impl Journeys {
    /// The journeys of a reloaded config, and for each old journey id the new id that
    /// takes over its window state: `None` where the journey went or its definition
    /// changed. Derived journeys carry over while the rules that derive them are unchanged.
    pub fn reload(cfg: &Config, old: &Journeys) -> (Journeys, Vec<Option<JourneyId>>) {
        let mut new = Journeys::new(cfg);
        new.generation = old.generation + 1;
        // Auto ids follow the configured ones; `next_id` is one past the last given out.
        let ids = old
            .auto
            .as_ref()
            .map_or(old.configured.len(), |a| a.next_id.load(Ordering::Relaxed));
        let mut remap = vec![None; ids];
        for c in &old.configured {
            if let Some(n) = new
                .configured
                .iter()
                .find(|n| n.info.name == c.info.name && n.fingerprint == c.fingerprint)
            {
                remap[c.info.id as usize] = Some(n.info.id);
            }
        }
        if let (Some(o), Some(n)) = (&old.auto, &new.auto) {
            if o.fingerprint() == n.fingerprint() {
                if let Some(slot) = remap.get_mut(o.overflow.id as usize) {
                    *slot = Some(n.overflow.id);
                }
                for (service, name, id) in o.entries() {
                    let (new_id, _) = n.lookup(&service, &name);
                    if let Some(slot) = remap.get_mut(id as usize) {
                        *slot = Some(new_id);
                    }
                }
            }
        }
        (new, remap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::AttrValue;

    /// A server span with only a name: all the matchers below read.
    struct Named(&'static str);

    impl SpanView for Named {
        fn service_name(&self) -> &str {
            "shop"
        }
        fn name(&self) -> &str {
            self.0
        }
        fn kind(&self) -> i32 {
            crate::span::kind::SERVER
        }
        fn status_code(&self) -> i32 {
            0
        }
        fn start_ns(&self) -> u64 {
            0
        }
        fn end_ns(&self) -> u64 {
            0
        }
        fn span_attr(&self, _: &str) -> Option<AttrValue<'_>> {
            None
        }
        fn resource_attr(&self, _: &str) -> Option<AttrValue<'_>> {
            None
        }
        fn any_event(&self, _: &mut dyn FnMut(&str) -> bool) -> bool {
            false
        }
    }

    #[test]
    fn name_gate_rejects_only_names_an_exact_matcher_cannot_match() {
        let js = journeys(
            "journeys:
  - name: long
    match: { span_name: \"POST /checkout\", kind: server }
  - name: short
    match: { span_name: cart }
  - name: nested
    match: { all: [{ kind: server }, { all: [{ span_name: \"GET /login\" }] }] }
  - name: listed
    match: { span_name: { one_of: [\"POST /checkouT\", x] } }
  - name: either
    match: { any: [{ span_name: \"POST /checkoux\" }, { span_name: y }] }
  - name: pattern
    match: { span_name: { regex: \"^z\" } }
",
        );
        let gates: Vec<bool> = js
            .configured
            .iter()
            .map(|c| c.name_gate.is_some())
            .collect();
        assert_eq!(gates, [true, true, true, false, false, false]);
        let id = |name: &'static str| js.classify(&Named(name)).map(|c| c.journey);
        assert_eq!(id("POST /checkout"), Some(0));
        assert_eq!(id("cart"), Some(1));
        assert_eq!(id("GET /login"), Some(2));
        // Same length and head as "POST /checkout", a different tail: the gate passes,
        // `eval` decides.
        assert_eq!(id("POST /checkouT"), Some(3));
        assert_eq!(id("POST /checkoux"), Some(4));
        // Same head as a short name, another length; a shorter prefix of a long one.
        assert_eq!(id("cart2"), None);
        assert_eq!(id("car"), None);
        assert_eq!(id("POST /c"), None);
        assert_eq!(id("x"), Some(3));
        assert_eq!(id("y"), Some(4));
        assert_eq!(id("zz"), Some(5));
        assert_eq!(id(""), None);
    }

    fn journeys(yaml: &str) -> Journeys {
        Journeys::new(&Config::parse(yaml, "t", &|_| None).unwrap())
    }

    #[test]
    fn restore_brings_back_configured_and_derived_journeys_but_not_removed_ones() {
        let configured = journeys("journeys:\n  - name: checkout\n    match: { span_name: x }\n");
        let name = |j: Option<Arc<JourneyInfo>>| j.map(|j| j.name.to_string());
        assert_eq!(
            name(configured.restore("checkout", &Origin::Configured)),
            Some("checkout".into())
        );
        assert_eq!(name(configured.restore("login", &Origin::Configured)), None);
        let derived = |s: &str, n: &str| Origin::Derived {
            service: s.into(),
            span: n.into(),
        };
        // Auto-derivation is off while journeys are configured.
        assert_eq!(name(configured.restore("a:b", &derived("a", "b"))), None);

        let auto = journeys("auto_journeys:\n  max: 1\n");
        assert_eq!(name(auto.restore("checkout", &Origin::Configured)), None);
        assert_eq!(
            name(auto.restore("a:b", &derived("a", "b"))),
            Some("a:b".into())
        );
        assert_eq!(auto.auto_count(), 1);
        // Restoring again finds the same journey; past the limit nothing is made.
        assert_eq!(
            name(auto.restore("a:b", &derived("a", "b"))),
            Some("a:b".into())
        );
        assert_eq!(name(auto.restore("c:d", &derived("c", "d"))), None);
        assert_eq!(auto.auto_count(), 1);
        assert_eq!(
            name(auto.restore(AUTO_OVERFLOW, &Origin::AutoOverflow)),
            Some(AUTO_OVERFLOW.into())
        );
    }

    /// An owner takes the journeys publishers derived: configured ones by name, derived
    /// ones made here (bounded by `auto_journeys.max` with its own), `_overflow`.
    #[test]
    fn an_owner_adopts_derived_journeys_up_to_the_limit() {
        let name = |j: Result<Arc<JourneyInfo>, NotAdopted>| j.map(|j| j.name.to_string());
        let configured = journeys("journeys:\n  - name: checkout\n    match: { span_name: x }\n");
        assert_eq!(
            name(configured.adopt("checkout", None)),
            Ok("checkout".into())
        );
        // Auto-derivation is off while journeys are configured: nothing to adopt into.
        assert_eq!(
            name(configured.adopt("shop:GET /", None)),
            Err(NotAdopted::Unknown)
        );
        assert_eq!(
            name(configured.adopt(AUTO_OVERFLOW, None)),
            Err(NotAdopted::Unknown)
        );

        let auto = journeys("auto_journeys:\n  max: 2\n");
        // A journey this instance derived itself (as `classify` does, by its origin), of a
        // service whose name holds a ':'.
        let own = Origin::Derived {
            service: "shop:eu".into(),
            span: "GET /".into(),
        };
        let own = auto.restore("shop:eu:GET /", &own).expect("derived");
        // Found by name rather than made again as service "shop", span "eu:GET /".
        let found = auto.adopt("shop:eu:GET /", None).expect("its own");
        assert_eq!(found.id, own.id);
        assert_eq!(auto.auto_count(), 1);
        // A journey only a publisher derived is made here, with its origin; again, the same.
        let adopted = auto.adopt("cart:POST /items", None).expect("adopted");
        assert_eq!(
            adopted.origin,
            Origin::Derived {
                service: "cart".into(),
                span: "POST /items".into()
            }
        );
        assert!(adopted.auto);
        assert_eq!(
            auto.adopt("cart:POST /items", None).map(|j| j.id),
            Ok(adopted.id)
        );
        assert_eq!(auto.auto_count(), 2);
        // max 2 reached: a third is refused as full, and no journey is made.
        assert_eq!(
            name(auto.adopt("search:GET /q", None)),
            Err(NotAdopted::Full)
        );
        assert_eq!(auto.auto_count(), 2);
        assert_eq!(
            name(auto.adopt(AUTO_OVERFLOW, None)),
            Ok(AUTO_OVERFLOW.into())
        );
        // Not a derived name, or longer than publishers make it.
        assert_eq!(name(auto.adopt("checkout", None)), Err(NotAdopted::Unknown));
        let long = format!("{}:x", "s".repeat(MAX_LABEL_VALUE_BYTES + 1));
        assert_eq!(name(auto.adopt(&long, None)), Err(NotAdopted::Unknown));
    }

    /// A derived journey of service `svc:a` that only a publisher saw: the partial names
    /// its service, so the owner splits `svc:a:GET /x:y` after `svc:a`, keeping the `:`
    /// of the span name too, and makes it with the publisher's origin (what its
    /// changelog record and checkpoint carry). A name the service does not start is none
    /// a publisher makes. Without the service (an older publisher) the first `:` splits.
    #[test]
    fn an_owner_splits_a_derived_name_after_the_service_the_partial_names() {
        let auto = journeys("auto_journeys:\n  max: 3\n");
        let adopted = auto
            .adopt("svc:a:GET /x:y", Some("svc:a"))
            .expect("adopted");
        assert_eq!(&*adopted.name, "svc:a:GET /x:y");
        assert_eq!(
            adopted.origin,
            Origin::Derived {
                service: "svc:a".into(),
                span: "GET /x:y".into()
            }
        );
        assert_eq!(adopted.derived_service(), Some("svc:a"));
        // Again: the same journey, and one derived journey in all.
        let again = auto.adopt("svc:a:GET /x:y", Some("svc:a"));
        assert_eq!(again.map(|j| j.id), Ok(adopted.id));
        assert_eq!(auto.auto_count(), 1);
        // The journey this instance would make for the same spans is that one.
        let own = Origin::Derived {
            service: "svc:a".into(),
            span: "GET /x:y".into(),
        };
        let restored = auto.restore("svc:a:GET /x:y", &own).expect("the same");
        assert_eq!(restored.id, adopted.id);
        assert_eq!(
            auto.adopt("svc:b:GET /", Some("svc:a")).map(|j| j.id),
            Err(NotAdopted::Unknown)
        );
        let old = auto
            .adopt("svc:c:GET /", None)
            .expect("split at the first ':'");
        assert_eq!(
            old.origin,
            Origin::Derived {
                service: "svc".into(),
                span: "c:GET /".into()
            }
        );
        assert_eq!(auto.auto_count(), 2);
    }
}
