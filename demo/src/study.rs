//! Step 10: a private study that two aggregators run, neither seeing a
//! summary.

use medrelay_client::{Analyst, Patient};
use medrelay_dp::{Epsilon, Privacy};
use medrelay_server::LocalServer;

use crate::story::{expect_denied, AtStep, Story};
use crate::DemoError;

/// ε of the noise each aggregator adds to a private study's release.
const STUDY_EPSILON: f64 = 1.0;

/// Step 10: both aggregators install the example study, every demo patient
/// contributes one sealed report, the analyst releases the batch once and
/// reads the statistics; a second release is refused.
pub(crate) fn study_step(
    story: &mut Story<'_>,
    leader: &LocalServer,
    helper: &LocalServer,
    alpha: &Patient,
    others: &[Patient],
    analyst: &Analyst,
) -> Result<(), DemoError> {
    use sha2::Digest as _;
    let (Some(ls), Some(hs)) = (leader.state().study_service(), helper.state().study_service()) else {
        return Err(story.fail("the servers are not study aggregators"));
    };
    let patients: Vec<&Patient> = std::iter::once(alpha).chain(others).collect();
    let schema_json = serde_json::to_vec(&medrelay_dp::Schema::health_basics()).at(story)?;
    let schema_sha = hex::encode(sha2::Sha256::digest(&schema_json));
    let min = u64::try_from(patients.len()).unwrap_or(u64::MAX);
    let def = medrelay_dp::study::example_study(
        &schema_sha,
        ls.hpke_public_key().as_bytes(),
        hs.hpke_public_key().as_bytes(),
        min,
        Privacy::Epsilon(Epsilon::new(STUDY_EPSILON).at(story)?),
    )
    .at(story)?;
    let json = def.canonical_json().at(story)?;
    let (stored, _) = ls.install(leader.state().store().as_ref(), &json, leader.state().clock()).at(story)?;
    hs.install(helper.state().store().as_ref(), &json, helper.state().clock()).at(story)?;
    let name = def.name().to_owned();
    story.say(format!(
        "a second operator runs the helper aggregator at {} (its own data directory, HPKE key and log; it answers only this server)",
        helper.url()
    ));
    story.say(format!(
        "both install study \"{name}\" (sha256 {}…, logged on both): mean, spread and correlation of systolic pressure and BMI by diabetes status, released in batches of at least {min}, ε = {STUDY_EPSILON} of noise from each aggregator",
        &hex::encode(stored.sha256)[..12]
    ));
    let mut size = 0;
    for p in &patients {
        let study = p.study(&name).at(story)?;
        let preview = p.summary(study.definition().schema()).at(story)?;
        let now = medrelay_client::time::now().unix_seconds();
        size = size.max(medrelay_client::study::seal_contribution(&study, &preview, now).at(story)?.len());
        p.study_contribute(&study, &preview).at(story)?;
    }
    story.say(format!(
        "{} patients checked the study against the signed log and sent one report each: two secret shares \
         ({size} bytes in all), each encrypted to one aggregator; neither server can read a value",
        patients.len()
    ));
    let release = analyst.study_release(&name, None).at(story)?;
    story.say(format!(
        "the analyst releases batch {}: each aggregator added its own noise, and the cost was logged (entry {}) before anything left",
        release.batch, release.log_index
    ));
    let results = analyst.study_results(&name, None, 0.95, &[0.5]).at(story)?;
    for f in &results.overall.fields {
        story.say(format!(
            "  {}: mean {:.1} in [{:.1}, {:.1}], std {:.1} in [{:.1}, {:.1}] (95%)",
            f.field, f.mean.value, f.mean.low, f.mean.high, f.std_dev.value, f.std_dev.low, f.std_dev.high
        ));
    }
    for c in &results.overall.correlations {
        story.say(format!(
            "  correlation of {} and {}: {:.2} in [{:.2}, {:.2}]",
            c.x, c.y, c.r.value, c.r.low, c.r.high
        ));
    }
    story.say(format!(
        "  (computed on the analyst's machine from one noisy release; with {} patients the intervals are wide, and they narrow as batches grow)",
        patients.len()
    ));
    expect_denied(story, analyst.study_release(&name, Some(release.batch)), "already_released")?;
    story.say(format!("releasing batch {} again → refused: already_released", release.batch));
    Ok(())
}
