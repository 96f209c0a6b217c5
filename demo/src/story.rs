//! Narration: numbered steps, indented lines, and the checks that stop the
//! demo at the first step that does not behave as told.

use std::fmt::Display;
use std::io::Write;

use medrelay_client::ClientError;
use medrelay_wire::dp::DpAnswer;
use serde_json::Value;

use crate::DemoError;

/// Narration: numbered steps, indented lines.
pub(crate) struct Story<'a> {
    pub(crate) out: &'a mut dyn Write,
    pub(crate) step: usize,
    pub(crate) title: &'static str,
}

impl Story<'_> {
    pub(crate) fn step(&mut self, title: &'static str) {
        self.step += 1;
        self.title = title;
        let _ = writeln!(self.out, "\n{}. {title}", self.step);
    }

    pub(crate) fn say(&mut self, line: impl Display) {
        let _ = writeln!(self.out, "   {line}");
    }

    pub(crate) fn fail(&self, message: impl Display) -> DemoError {
        DemoError { step: self.step, title: self.title, message: message.to_string() }
    }

    /// Checks a narrated expectation.
    pub(crate) fn expect(&self, ok: bool, message: impl FnOnce() -> String) -> Result<(), DemoError> {
        if ok {
            Ok(())
        } else {
            Err(self.fail(message()))
        }
    }
}

/// Attaches the current step to errors.
pub(crate) trait AtStep<T> {
    fn at(self, story: &Story<'_>) -> Result<T, DemoError>;
}

impl<T, E: Display> AtStep<T> for Result<T, E> {
    fn at(self, story: &Story<'_>) -> Result<T, DemoError> {
        self.map_err(|e| story.fail(e))
    }
}

pub(crate) fn short(id: impl Display) -> String {
    let s = id.to_string();
    s.chars().take(12).collect()
}

/// Expects a refusal with `code` from the server.
pub(crate) fn expect_denied<T>(
    story: &Story<'_>,
    r: Result<T, ClientError>,
    code: &str,
) -> Result<(), DemoError> {
    match r {
        Err(ClientError::Server { code: got, .. }) if got == code => Ok(()),
        Err(ClientError::BudgetExceeded(_)) if code == "budget_exceeded" => Ok(()),
        Err(e) => Err(story.fail(format!("expected a refusal with code {code}, got: {e}"))),
        Ok(_) => Err(story.fail(format!("expected a refusal with code {code}, but the record was served"))),
    }
}

/// A one-line reading of a decrypted FHIR Observation.
pub(crate) fn describe_observation(v: &Value) -> String {
    let name = v["code"]["coding"][0]["display"].as_str().or(v["code"]["text"].as_str()).unwrap_or("?");
    let q = &v["valueQuantity"];
    match (q["value"].as_f64(), q["unit"].as_str()) {
        (Some(x), Some(u)) => format!("{name}: {x} {u}"),
        (Some(x), None) => format!("{name}: {x}"),
        _ => name.to_owned(),
    }
}

/// A one-line reading of a DP answer: value, accuracy, mechanism.
pub(crate) fn describe_answer(a: &DpAnswer) -> String {
    use medrelay_dp::{Accuracy, AnswerValue, Mechanism};
    let value = match &a.answer.value {
        AnswerValue::Scalar(x) => format!("{x:.1}"),
        AnswerValue::Histogram(bins) => {
            bins.iter().map(|b| format!("{}: {}", b.label, b.count)).collect::<Vec<_>>().join(", ")
        }
    };
    let accuracy = match &a.answer.accuracy {
        Accuracy::Interval { confidence, low, high, .. } => {
            format!("true value in [{low:.1}, {high:.1}] with {:.0}% confidence", confidence * 100.0)
        }
        Accuracy::PerBin { confidence, half_width } => {
            format!("each bin within ±{half_width:.1} with {:.0}% confidence", confidence * 100.0)
        }
        Accuracy::Rank { confidence, within } => {
            format!("within {within:.1} ranks of the true median with {:.0}% confidence", confidence * 100.0)
        }
    };
    let how: Vec<String> = a
        .answer
        .components
        .iter()
        .map(|c| {
            let m = match c.mechanism {
                Mechanism::DiscreteLaplace => "discrete Laplace noise",
                Mechanism::Laplace => "Laplace noise",
                Mechanism::DiscreteGaussian => "discrete Gaussian noise",
                Mechanism::Gaussian => "Gaussian noise",
                Mechanism::ExponentialMechanism => "exponential mechanism",
            };
            format!("{m}, scale {:.2}", c.scale)
        })
        .collect();
    format!("noisy answer {value}: {accuracy} ({})", how.join("; "))
}
