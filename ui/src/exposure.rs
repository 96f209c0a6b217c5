//! What a grant exposes beyond its scope, shown to the patient before they
//! sign it, by the web app's review page and by `medrelay-patient grant`
//! alike (review finding F6; `docs/THREAT-MODEL.md`).
//!
//! A grant carries one re-encryption key per key class its scope reaches
//! ([`Scope::key_classes`]). The server's policy check enforces the exact
//! scope, but a server colluding with the doctor could use those keys to
//! open every record of those classes.

use medrelay_crypto::KeyClass;
use medrelay_policy::Scope;

/// What a colluding server and doctor could read with a grant's
/// re-encryption keys, and what they could not.
pub const EXPOSURE_NOTE: &str = "The server receives one re-encryption key per class listed. If the \
     server and this doctor colluded, they could read every record of these classes, in the scope or \
     not, including records you add later and even after you revoke; never records of your other \
     classes. Without collusion, the server serves only what the scope names.";

/// What each key class holds, for people.
pub fn class_text(class: KeyClass) -> &'static str {
    match class {
        KeyClass::General => "general records: problems, encounters, vital signs, procedures, notes",
        KeyClass::Laboratory => "laboratory results",
        KeyClass::Imaging => "imaging studies and reports",
        KeyClass::Medications => "medications: prescriptions, statements, administrations",
        KeyClass::MentalHealth => "records labelled mental health",
        KeyClass::SubstanceUse => "records labelled substance use",
        KeyClass::SexualHealth => "records labelled sexual and reproductive health",
        KeyClass::Genetics => "records labelled genetic information",
    }
}

/// Every key class a grant of `scope` exposes, in class order, each with
/// what it holds.
pub fn exposed_classes(scope: &Scope) -> Vec<(KeyClass, &'static str)> {
    scope.key_classes().into_iter().map(|c| (c, class_text(c))).collect()
}

/// The exposure as lines of text for a terminal: a heading, one line per
/// class, then [`EXPOSURE_NOTE`].
pub fn exposure_text(scope: &Scope) -> String {
    let classes = exposed_classes(scope);
    let width = classes.iter().map(|(c, _)| c.as_str().len()).max().unwrap_or(0);
    let mut out = format!("Key classes this grant exposes ({}):\n", classes.len());
    for (class, text) in &classes {
        out.push_str(&format!("  {:width$}  {text}\n", class.as_str()));
    }
    out.push_str(EXPOSURE_NOTE);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_text_lists_every_class_and_what_collusion_could_read() {
        let scope: Scope = "Observation?category=vital-signs".parse().unwrap();
        let text = exposure_text(&scope);
        assert!(
            text.starts_with("Key classes this grant exposes (1):\n  general  general records:"),
            "{text}"
        );
        assert!(!text.contains("laboratory"), "{text}");
        assert!(text.contains("could read every record of these classes"), "{text}");
        let scope: Scope =
            "MedicationRequest,Observation?category=laboratory,sensitive:mental-health".parse().unwrap();
        let text = exposure_text(&scope);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Key classes this grant exposes (3):");
        assert_eq!(lines[1], "  laboratory     laboratory results");
        assert!(lines[2].starts_with("  medications    medications:"), "{text}");
        assert_eq!(lines[3], "  mental-health  records labelled mental health");
        assert_eq!(lines[4], EXPOSURE_NOTE);
        assert_eq!(lines.len(), 5);
    }
}
