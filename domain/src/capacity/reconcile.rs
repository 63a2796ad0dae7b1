//! One run's decisions: which capacity is this plan's, what to adopt, create and delete, and
//! the table to publish before acting.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};

use super::*;

/// Why a capacity is considered this plan's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// The routing table's records name it.
    Recorded,
    /// It carries `bgw:plan` with this plan's name.
    Tagged,
    /// It carries no `bgw:plan` tag and the name this plan would give it.
    Named,
    Foreign,
}

/// Whether the capacity's tags must be looked up to tell whether it is ours: it is not in the
/// records, and it serves a planned model or has a name of this toolkit's.
pub fn needs_tags(
    capacity: &Capacity,
    previous: Option<&RoutingTable>,
    plan: &CapacityPlan,
) -> bool {
    let recorded = previous.is_some_and(|t| recorded(t, capacity));
    let relevant = capacity.name.starts_with(NAME_PREFIX)
        || capacity
            .model_id
            .as_deref()
            .is_some_and(|m| plan.entry(m).is_some());
    capacity.model_id.is_some() && !recorded && relevant
}

pub(crate) fn recorded(table: &RoutingTable, capacity: &Capacity) -> bool {
    table
        .record(&capacity.name)
        .is_some_and(|r| r.arn.is_none() || r.arn.as_deref() == Some(capacity.arn.as_str()))
}

pub fn ownership(
    observed: &Observed,
    previous: Option<&RoutingTable>,
    plan_name: &str,
) -> Ownership {
    let capacity = &observed.capacity;
    let Some(model_id) = capacity.model_id.as_deref() else {
        return Ownership::Foreign;
    };
    if previous.is_some_and(|t| recorded(t, capacity)) {
        return Ownership::Recorded;
    }
    let Some(tags) = &observed.tags else {
        return Ownership::Foreign;
    };
    match tags.get(PLAN_TAG) {
        Some(plan) if plan == plan_name => Ownership::Tagged,
        Some(_) => Ownership::Foreign,
        None if capacity.name
            == capacity_name(model_id, capacity.model_units, capacity.commitment) =>
        {
            Ownership::Named
        }
        None => Ownership::Foreign,
    }
}

/// The tags this plan puts on a capacity of a model.
pub fn plan_tags(plan_name: &str, model_id: &str) -> Vec<(String, String)> {
    vec![
        (PLAN_TAG.to_owned(), plan_name.to_owned()),
        (MODEL_TAG.to_owned(), model_id.to_owned()),
    ]
}

/// A capacity to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOrder {
    pub name: String,
    pub model_id: String,
    pub model_units: u32,
    pub commitment: Commitment,
    pub client_request_token: String,
    pub tags: Vec<(String, String)>,
}

/// A capacity found and taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adoption {
    pub arn: String,
    pub name: String,
    pub model_id: String,
    /// Adopted by name: it gets the plan's tags.
    pub needs_tags: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// Its window closed (and its route was withdrawn a drain ago).
    WindowClosed,
    /// The plan wants other units, or no capacity, of its model.
    Replaced,
    /// Its creation failed: it never served.
    Failed,
}

impl DeleteReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WindowClosed => "window closed",
            Self::Replaced => "replaced or no longer planned",
            Self::Failed => "creation failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOrder {
    pub arn: String,
    pub name: String,
    pub model_id: String,
    pub reason: DeleteReason,
}

/// What one run decided: the table to publish first, then the actions, in order: adoptions,
/// creations, deletions (each deleted capacity is already out of the published routes).
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciliation {
    pub table: RoutingTable,
    /// Whether the table differs from the stored one (or there is anything to do): only then
    /// is it written.
    pub changed: bool,
    pub adoptions: Vec<Adoption>,
    pub creates: Vec<CreateOrder>,
    pub deletes: Vec<DeleteOrder>,
}

/// One reconciliation's inputs.
#[derive(Debug, Clone, Copy)]
pub struct Reconcile<'a> {
    pub plan: &'a CapacityPlan,
    /// The `bgw:plan` tag value of this plan's capacity.
    pub plan_name: &'a str,
    pub lead_minutes: u32,
    /// How long after its route was withdrawn a capacity is deleted.
    pub drain: Duration,
    pub now: DateTime<Utc>,
    /// Every Provisioned Throughput Bedrock lists, with tags where [`needs_tags`] said so.
    pub observed: &'a [Observed],
    /// The stored table, if any.
    pub previous: Option<&'a RoutingTable>,
}

pub(crate) fn by_age(list: &mut [&Capacity]) {
    list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.arn.cmp(&b.arn)));
}

impl Reconcile<'_> {
    pub fn decide(&self) -> Reconciliation {
        let now = self.now;
        let empty = RoutingTable::default();
        let previous = self.previous.unwrap_or(&empty);

        let mut ours: Vec<&Capacity> = Vec::new();
        let mut adoptions = Vec::new();
        for observed in self.observed {
            let capacity = &observed.capacity;
            let owner = ownership(observed, self.previous, self.plan_name);
            if owner == Ownership::Foreign {
                continue;
            }
            if matches!(owner, Ownership::Tagged | Ownership::Named) {
                adoptions.push(Adoption {
                    arn: capacity.arn.clone(),
                    name: capacity.name.clone(),
                    model_id: capacity.model_id.clone().unwrap_or_default(),
                    needs_tags: owner == Ownership::Named,
                });
            }
            ours.push(capacity);
        }

        let due: HashMap<&str, Due> = self
            .plan
            .entries
            .iter()
            .map(|e| (e.model_id.as_str(), e.due(now, self.lead_minutes)))
            .collect();
        // What the plan wants now, status aside.
        let is_due = |model: &str| due.get(model).is_some_and(|d| d.is_due());
        let wanted = |c: &Capacity| {
            c.model_id
                .as_deref()
                .and_then(|m| self.plan.entry(m))
                .is_some_and(|e| e.matches(c) && is_due(&e.model_id))
        };
        let observed_names: HashSet<&str> = ours.iter().map(|c| c.name.as_str()).collect();
        let pending: Vec<&CapacityRecord> = previous
            .capacities
            .iter()
            .filter(|r| !observed_names.contains(r.name.as_str()))
            .filter(|r| {
                r.requested_at
                    .is_some_and(|t| now.timestamp() - t < PENDING_GRACE_SECONDS)
            })
            .collect();

        // Creations: a due entry with nothing of its kind (a failed one of its name is deleted
        // first; one requested moments ago is trusted to be on its way).
        let mut creates = Vec::new();
        for entry in &self.plan.entries {
            let Some(entry_due) = due.get(entry.model_id.as_str()).filter(|d| d.is_due()) else {
                continue;
            };
            let name = entry.name();
            let exists = ours.iter().any(|c| {
                c.name == name || (entry.matches(c) && c.status != CapacityStatus::Failed)
            });
            if exists || pending.iter().any(|r| r.name == name) {
                continue;
            }
            creates.push(CreateOrder {
                name,
                model_id: entry.model_id.clone(),
                model_units: entry.model_units,
                commitment: entry.commitment,
                client_request_token: entry.client_request_token(self.plan_name, entry_due.opens()),
                tags: plan_tags(self.plan_name, &entry.model_id),
            });
        }

        // Routes, per model.
        let mut models: Vec<&str> = ours.iter().filter_map(|c| c.model_id.as_deref()).collect();
        models.sort_unstable();
        models.dedup();
        let mut routes = BTreeMap::new();
        for model in models {
            let of_model =
                |c: &&&Capacity| c.model_id.as_deref() == Some(model) && c.status.serves();
            let mut planned: Vec<&Capacity> = ours
                .iter()
                .filter(of_model)
                .filter(|c| wanted(c))
                .copied()
                .collect();
            let mut committed: Vec<&Capacity> = ours
                .iter()
                .filter(of_model)
                .filter(|c| !wanted(c) && c.commitment.is_committed())
                .copied()
                .collect();
            let replacing = planned.is_empty() && is_due(model);
            let mut outgoing: Vec<&Capacity> = if replacing {
                ours.iter()
                    .filter(of_model)
                    .filter(|c| !wanted(c) && !c.commitment.is_committed())
                    .copied()
                    .collect()
            } else {
                Vec::new()
            };
            by_age(&mut planned);
            by_age(&mut committed);
            by_age(&mut outgoing);
            let arns: Vec<String> = planned
                .iter()
                .chain(&committed)
                .chain(&outgoing)
                .map(|c| c.arn.clone())
                .collect();
            if !arns.is_empty() {
                routes.insert(model.to_owned(), arns);
            }
        }
        let routed = |arn: &str| routes.values().flatten().any(|a| a == arn);

        // Deletions and the records.
        let mut deletes = Vec::new();
        let mut records = Vec::new();
        for capacity in &ours {
            let routed_now = routed(&capacity.arn);
            let record = previous.record(&capacity.name);
            let withdrawn_at = if routed_now {
                None
            } else if previous.routes_to(&capacity.arn) {
                Some(now.timestamp())
            } else {
                record.and_then(|r| r.withdrawn_at)
            };
            let model_id = capacity.model_id.clone().unwrap_or_default();
            let retiring = !routed_now && !capacity.commitment.is_committed();
            let reason = match capacity.status {
                CapacityStatus::Failed if !capacity.commitment.is_committed() => {
                    Some(DeleteReason::Failed)
                }
                CapacityStatus::InService if retiring && !wanted(capacity) => {
                    let drained = withdrawn_at
                        .is_none_or(|t| now.timestamp() - t >= self.drain.num_seconds());
                    let closed = self
                        .plan
                        .entry(&model_id)
                        .is_some_and(|e| e.matches(capacity) && e.window.is_some());
                    drained.then_some(if closed {
                        DeleteReason::WindowClosed
                    } else {
                        DeleteReason::Replaced
                    })
                }
                _ => None,
            };
            if let Some(reason) = reason {
                deletes.push(DeleteOrder {
                    arn: capacity.arn.clone(),
                    name: capacity.name.clone(),
                    model_id: model_id.clone(),
                    reason,
                });
            }
            records.push(CapacityRecord {
                name: capacity.name.clone(),
                arn: Some(capacity.arn.clone()),
                model_id,
                model_units: capacity.model_units,
                commitment: capacity.commitment,
                status: capacity.status.as_str().to_owned(),
                routed: routed_now,
                withdrawn_at,
                requested_at: None,
            });
        }
        records.extend(pending.into_iter().cloned());
        records.extend(creates.iter().map(|order| CapacityRecord {
            name: order.name.clone(),
            arn: None,
            model_id: order.model_id.clone(),
            model_units: order.model_units,
            commitment: order.commitment,
            status: "Requested".to_owned(),
            routed: false,
            withdrawn_at: None,
            requested_at: Some(now.timestamp()),
        }));
        records.sort_by(|a, b| a.name.cmp(&b.name));

        let changed = routes != previous.routes
            || records != previous.capacities
            || !adoptions.is_empty()
            || !creates.is_empty()
            || !deletes.is_empty();
        Reconciliation {
            table: RoutingTable {
                version: previous.version + 1,
                updated_at: now.timestamp(),
                routes,
                capacities: records,
            },
            changed,
            adoptions,
            creates,
            deletes,
        }
    }
}

/// The table after the creations of a run: Bedrock's ARN on each requested record, the records
/// of refused creations dropped (so the next run asks again).
pub fn after_creations(
    table: &RoutingTable,
    created: &[(String, String)],
    refused: &[String],
    now: DateTime<Utc>,
) -> RoutingTable {
    let mut next = table.clone();
    next.version += 1;
    next.updated_at = now.timestamp();
    next.capacities.retain(|r| !refused.contains(&r.name));
    for record in &mut next.capacities {
        if let Some((_, arn)) = created.iter().find(|(name, _)| *name == record.name) {
            record.arn = Some(arn.clone());
        }
    }
    next
}
