//! Label propagation through references, over a whole import, before
//! anything is encrypted.
//!
//! A resource that *states* something about a labelled one carries its
//! label:
//!
//! | element (on any resource type) | example |
//! | --- | --- |
//! | `reasonReference` | a visit, procedure or prescription for an alcoholism diagnosis |
//! | `diagnosisReference`, `procedureReference`, `prescription`, `originalPrescription`, `claim` | a claim or explanation of benefit billing it |
//! | `condition` (`Encounter.diagnosis`, `EpisodeOfCare.diagnosis`), `addresses`, `problem`, `itemReference` | a care plan or goal addressing it |
//! | `result`, `hasMember` | a report or panel holding a labelled result |
//! | `medicationReference` | a prescription of a labelled drug |
//! | `entry`, `item`, `content`, `target` | a document section, list, manifest or provenance of it |
//!
//! and the *encounter* (`encounter`, `context`) in which a labelled
//! diagnosis, procedure, prescription, order or assessment was made is
//! labelled too: the visit for an alcoholism treatment is not readable
//! under a plain `Encounter` grant. Other references (`subject`,
//! `performer`, an observation's `encounter`, …) do not propagate: a
//! patient's every record points at the Patient, and a routine lab result
//! taken in a sensitive visit is not itself sensitive.
//!
//! Propagation runs to a fixed point (labels only grow, at most four per
//! record), and each added label records the record it came from.
//! Contained resources are part of their container: their codes label it
//! directly ([`crate::labels`]).

use std::collections::VecDeque;

use medrelay_crypto::SensitivityLabel;
use serde_json::Value;

use crate::labels::{LabelReason, Why};
use crate::reference::{references_in, Resolution, Resolver};

/// Elements through which the referring resource inherits the labels of
/// the referenced one.
pub const INHERITING_FIELDS: &[&str] = &[
    "reasonReference",
    "diagnosisReference",
    "procedureReference",
    "prescription",
    "originalPrescription",
    "claim",
    "condition",
    "addresses",
    "problem",
    "itemReference",
    "result",
    "hasMember",
    "medicationReference",
    "entry",
    "item",
    "content",
    "target",
];

/// Resource types whose labels pass to the encounter they were made in.
pub const LABEL_THEIR_ENCOUNTER: &[&str] = &[
    "Condition",
    "Procedure",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationAdministration",
    "MedicationDispense",
    "ServiceRequest",
    "ClinicalImpression",
];

/// One resource of the import, as propagation sees it.
#[derive(Debug)]
pub struct Node<'v> {
    /// `resourceType`.
    pub resource_type: &'v str,
    /// `id` (given or assigned).
    pub id: &'v str,
    /// The entry's `fullUrl`.
    pub full_url: Option<&'v str>,
    /// The resource.
    pub resource: &'v Value,
}

fn has(reasons: &[LabelReason], label: SensitivityLabel) -> bool {
    reasons.iter().any(|r| r.label == label)
}

/// Adds to `labels[i]` every label that reaches node `i` through the rules
/// above. `labels` holds each node's direct labels on entry.
pub fn propagate(nodes: &[Node<'_>], labels: &mut [Vec<LabelReason>]) {
    let mut resolver = Resolver::default();
    for (i, n) in nodes.iter().enumerate() {
        resolver.add(i, n.resource_type, n.id, n.full_url);
    }
    // edges[j] = (i, field, refers): labels of j flow to i.
    let mut edges: Vec<Vec<(usize, &str, bool)>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for r in references_in(n.resource) {
            let Resolution::Resource(j) = resolver.resolve(r.reference, n.resource, n.full_url) else {
                continue;
            };
            if j == i {
                continue;
            }
            if INHERITING_FIELDS.contains(&r.field) {
                edges[j].push((i, r.field, true));
            }
            if (r.field == "encounter" || r.field == "context")
                && LABEL_THEIR_ENCOUNTER.contains(&n.resource_type)
                && nodes[j].resource_type == "Encounter"
            {
                edges[i].push((j, r.field, false));
            }
        }
    }
    // Breadth first from every labelled node: each label reaches a node
    // once, by the shortest chain.
    let mut queue: VecDeque<usize> = (0..nodes.len()).filter(|&i| !labels[i].is_empty()).collect();
    while let Some(j) = queue.pop_front() {
        let from_labels: Vec<SensitivityLabel> = {
            let mut l: Vec<_> = labels[j].iter().map(|r| r.label).collect();
            l.sort();
            l.dedup();
            l
        };
        for &(i, field, refers) in &edges[j] {
            let mut grew = false;
            for &label in &from_labels {
                if !has(&labels[i], label) {
                    let from = format!("{}/{}", nodes[j].resource_type, nodes[j].id);
                    labels[i].push(LabelReason {
                        label,
                        why: Why::Reference { from, field: field.to_owned(), refers },
                    });
                    grew = true;
                }
            }
            if grew {
                queue.push_back(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;
    use SensitivityLabel::*;

    fn run(
        resources: &[(Value, Option<&str>)],
        direct: &[(usize, SensitivityLabel)],
    ) -> Vec<Vec<LabelReason>> {
        let nodes: Vec<Node<'_>> = resources
            .iter()
            .map(|(v, u)| Node {
                resource_type: v["resourceType"].as_str().unwrap(),
                id: v["id"].as_str().unwrap(),
                full_url: *u,
                resource: v,
            })
            .collect();
        let mut labels = vec![Vec::new(); nodes.len()];
        for &(i, l) in direct {
            labels[i].push(LabelReason { label: l, why: Why::Requested });
        }
        propagate(&nodes, &mut labels);
        labels
    }

    fn set(r: &[LabelReason]) -> Vec<SensitivityLabel> {
        let mut v: Vec<_> = r.iter().map(|x| x.label).collect();
        v.sort();
        v
    }

    #[test]
    fn the_synthea_shape() {
        // Condition (labelled) → its encounter; a claim and an EOB through
        // the diagnosis and claim; an observation of the same encounter and
        // the patient stay unlabelled.
        let res = [
            (json!({"resourceType":"Patient","id":"p"}), Some("urn:uuid:p")),
            (
                json!({"resourceType":"Encounter","id":"e","subject":{"reference":"urn:uuid:p"}}),
                Some("urn:uuid:e"),
            ),
            (
                json!({"resourceType":"Condition","id":"c","subject":{"reference":"urn:uuid:p"},
                    "encounter":{"reference":"urn:uuid:e"}}),
                Some("urn:uuid:c"),
            ),
            (
                json!({"resourceType":"Claim","id":"cl","patient":{"reference":"urn:uuid:p"},
                    "diagnosis":[{"diagnosisReference":{"reference":"urn:uuid:c"}}],
                    "item":[{"encounter":[{"reference":"urn:uuid:e"}]}]}),
                Some("urn:uuid:cl"),
            ),
            (
                json!({"resourceType":"ExplanationOfBenefit","id":"eob","claim":{"reference":"urn:uuid:cl"}}),
                Some("urn:uuid:eob"),
            ),
            (
                json!({"resourceType":"Observation","id":"o","encounter":{"reference":"urn:uuid:e"},
                    "subject":{"reference":"urn:uuid:p"}}),
                Some("urn:uuid:o"),
            ),
        ];
        let l = run(&res, &[(2, SubstanceUse)]);
        assert!(l[0].is_empty(), "patient");
        assert_eq!(set(&l[1]), [SubstanceUse], "encounter");
        assert_eq!(l[1][0].why.to_string(), "Condition/c refers to it as its encounter");
        assert_eq!(set(&l[3]), [SubstanceUse], "claim");
        assert_eq!(l[3][0].why.to_string(), "its diagnosisReference refers to Condition/c");
        assert_eq!(set(&l[4]), [SubstanceUse], "eob, through the claim");
        assert!(l[5].is_empty(), "an observation of the same visit");
    }

    #[test]
    fn reports_reasons_and_relative_references() {
        let res = [
            (json!({"resourceType":"Observation","id":"hiv"}), None),
            (json!({"resourceType":"Observation","id":"cbc"}), None),
            (
                json!({"resourceType":"DiagnosticReport","id":"r",
                    "result":[{"reference":"Observation/cbc"},{"reference":"Observation/hiv"}]}),
                None,
            ),
            (json!({"resourceType":"Encounter","id":"e"}), None),
            (
                json!({"resourceType":"Procedure","id":"pr","encounter":{"reference":"Encounter/e"},
                    "reasonReference":[{"reference":"Observation/hiv"}]}),
                None,
            ),
            (json!({"resourceType":"Observation","id":"o2","encounter":{"reference":"Encounter/e"}}), None),
        ];
        let l = run(&res, &[(0, SexualHealth)]);
        assert_eq!(set(&l[2]), [SexualHealth]);
        assert_eq!(set(&l[4]), [SexualHealth], "reasonReference");
        assert_eq!(set(&l[3]), [SexualHealth], "the procedure's encounter");
        assert!(l[1].is_empty() && l[5].is_empty());
    }

    #[test]
    fn labels_accumulate_and_cycles_end() {
        let res = [
            (
                json!({"resourceType":"Condition","id":"a","evidence":[{"detail":[{"reference":"Condition/b"}]}]}),
                None,
            ),
            (json!({"resourceType":"List","id":"l1","entry":[{"item":{"reference":"List/l2"}}]}), None),
            (
                json!({"resourceType":"List","id":"l2","entry":[{"item":{"reference":"List/l1"}},
                {"item":{"reference":"Condition/a"}},{"item":{"reference":"Condition/b"}}]}),
                None,
            ),
            (json!({"resourceType":"Condition","id":"b"}), None),
        ];
        let l = run(&res, &[(0, MentalHealth), (3, Genetics)]);
        assert_eq!(set(&l[1]), [MentalHealth, Genetics]);
        assert_eq!(set(&l[2]), [MentalHealth, Genetics]);
        assert_eq!(set(&l[0]), [MentalHealth], "evidence.detail does not propagate");
    }
}
