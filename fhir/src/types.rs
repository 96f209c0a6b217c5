//! The FHIR R4 (4.0.1) resource types, and which of them carry a person's
//! data.
//!
//! Every type that can hold something about a patient, their care, their
//! documents, their appointments, their coverage or their bills becomes a
//! record. Conformance, terminology and knowledge resources (profiles, value
//! sets, code systems, search parameters, order sets, measures, drug
//! monographs, …) describe *how* data is exchanged, not a person: they are
//! skipped and counted, with the reason. The grouping follows the FHIR R4
//! resource list (<https://hl7.org/fhir/R4/resourcelist.html>).

use std::fmt;

/// What a resource of some type is, to the importer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TypeClass {
    /// Imported as a record.
    Record(Group),
    /// Skipped: not patient data.
    NotPatientData(NotPatientData),
    /// A Bundle: a container whose entries are read.
    Bundle,
}

/// The FHIR R4 module of a patient-data type (for reports and docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// Patient, Practitioner, RelatedPerson, Person, Group, …
    Individuals,
    /// Organization, Location, Device, Substance, HealthcareService, …
    Entities,
    /// Encounter, EpisodeOfCare, Flag, List, Appointment, Task, …
    Workflow,
    /// Condition, AllergyIntolerance, Procedure, AdverseEvent, …
    Clinical,
    /// Observation, DiagnosticReport, ImagingStudy, Specimen, …
    Diagnostics,
    /// Medication*, Immunization*.
    Medications,
    /// CarePlan, CareTeam, Goal, ServiceRequest, Communication, …
    CareProvision,
    /// Composition, DocumentReference, DocumentManifest, Binary, Media.
    Documents,
    /// Provenance, AuditEvent, Consent, Contract.
    Security,
    /// Coverage, Claim, ExplanationOfBenefit, Account, Invoice, …
    Financial,
    /// ResearchSubject, MeasureReport, GuidanceResponse, Basic, Linkage, …
    Other,
}

impl Group {
    /// Lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Group::Individuals => "individuals",
            Group::Entities => "entities",
            Group::Workflow => "workflow",
            Group::Clinical => "clinical",
            Group::Diagnostics => "diagnostics",
            Group::Medications => "medications",
            Group::CareProvision => "care provision",
            Group::Documents => "documents",
            Group::Security => "security",
            Group::Financial => "financial",
            Group::Other => "other",
        }
    }
}

/// Why a resource type is not patient data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NotPatientData {
    /// StructureDefinition, CapabilityStatement, SearchParameter, …
    Conformance,
    /// CodeSystem, ValueSet, ConceptMap, NamingSystem, …
    Terminology,
    /// PlanDefinition, ActivityDefinition, Questionnaire, Measure, Library,
    /// Evidence*, *Definition, …
    Knowledge,
    /// MedicinalProduct*, Substance definitions, MedicationKnowledge.
    ProductDefinition,
    /// OperationOutcome, Parameters, MessageHeader, Subscription.
    Exchange,
}

impl NotPatientData {
    /// Why, in words.
    pub const fn as_str(self) -> &'static str {
        match self {
            NotPatientData::Conformance => "conformance resource",
            NotPatientData::Terminology => "terminology resource",
            NotPatientData::Knowledge => "knowledge or definition resource",
            NotPatientData::ProductDefinition => "product definition",
            NotPatientData::Exchange => "exchange infrastructure",
        }
    }
}

impl fmt::Display for NotPatientData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use Group::*;
use NotPatientData::*;

/// Every FHIR R4 resource type (146, `Bundle` included), sorted by name.
const TYPES: &[(&str, TypeClass)] = &[
    ("Account", TypeClass::Record(Financial)),
    ("ActivityDefinition", TypeClass::NotPatientData(Knowledge)),
    ("AdverseEvent", TypeClass::Record(Clinical)),
    ("AllergyIntolerance", TypeClass::Record(Clinical)),
    ("Appointment", TypeClass::Record(Workflow)),
    ("AppointmentResponse", TypeClass::Record(Workflow)),
    ("AuditEvent", TypeClass::Record(Security)),
    ("Basic", TypeClass::Record(Other)),
    ("Binary", TypeClass::Record(Documents)),
    ("BiologicallyDerivedProduct", TypeClass::Record(Entities)),
    ("BodyStructure", TypeClass::Record(Diagnostics)),
    ("Bundle", TypeClass::Bundle),
    ("CapabilityStatement", TypeClass::NotPatientData(Conformance)),
    ("CarePlan", TypeClass::Record(CareProvision)),
    ("CareTeam", TypeClass::Record(CareProvision)),
    ("CatalogEntry", TypeClass::NotPatientData(Knowledge)),
    ("ChargeItem", TypeClass::Record(Financial)),
    ("ChargeItemDefinition", TypeClass::NotPatientData(Knowledge)),
    ("Claim", TypeClass::Record(Financial)),
    ("ClaimResponse", TypeClass::Record(Financial)),
    ("ClinicalImpression", TypeClass::Record(Clinical)),
    ("CodeSystem", TypeClass::NotPatientData(Terminology)),
    ("Communication", TypeClass::Record(CareProvision)),
    ("CommunicationRequest", TypeClass::Record(CareProvision)),
    ("CompartmentDefinition", TypeClass::NotPatientData(Conformance)),
    ("Composition", TypeClass::Record(Documents)),
    ("ConceptMap", TypeClass::NotPatientData(Terminology)),
    ("Condition", TypeClass::Record(Clinical)),
    ("Consent", TypeClass::Record(Security)),
    ("Contract", TypeClass::Record(Security)),
    ("Coverage", TypeClass::Record(Financial)),
    ("CoverageEligibilityRequest", TypeClass::Record(Financial)),
    ("CoverageEligibilityResponse", TypeClass::Record(Financial)),
    ("DetectedIssue", TypeClass::Record(Clinical)),
    ("Device", TypeClass::Record(Entities)),
    ("DeviceDefinition", TypeClass::NotPatientData(Knowledge)),
    ("DeviceMetric", TypeClass::Record(Entities)),
    ("DeviceRequest", TypeClass::Record(CareProvision)),
    ("DeviceUseStatement", TypeClass::Record(CareProvision)),
    ("DiagnosticReport", TypeClass::Record(Diagnostics)),
    ("DocumentManifest", TypeClass::Record(Documents)),
    ("DocumentReference", TypeClass::Record(Documents)),
    ("EffectEvidenceSynthesis", TypeClass::NotPatientData(Knowledge)),
    ("Encounter", TypeClass::Record(Workflow)),
    ("Endpoint", TypeClass::Record(Entities)),
    ("EnrollmentRequest", TypeClass::Record(Financial)),
    ("EnrollmentResponse", TypeClass::Record(Financial)),
    ("EpisodeOfCare", TypeClass::Record(Workflow)),
    ("EventDefinition", TypeClass::NotPatientData(Knowledge)),
    ("Evidence", TypeClass::NotPatientData(Knowledge)),
    ("EvidenceVariable", TypeClass::NotPatientData(Knowledge)),
    ("ExampleScenario", TypeClass::NotPatientData(Conformance)),
    ("ExplanationOfBenefit", TypeClass::Record(Financial)),
    ("FamilyMemberHistory", TypeClass::Record(Clinical)),
    ("Flag", TypeClass::Record(Workflow)),
    ("Goal", TypeClass::Record(CareProvision)),
    ("GraphDefinition", TypeClass::NotPatientData(Conformance)),
    ("Group", TypeClass::Record(Individuals)),
    ("GuidanceResponse", TypeClass::Record(Other)),
    ("HealthcareService", TypeClass::Record(Entities)),
    ("ImagingStudy", TypeClass::Record(Diagnostics)),
    ("Immunization", TypeClass::Record(Medications)),
    ("ImmunizationEvaluation", TypeClass::Record(Medications)),
    ("ImmunizationRecommendation", TypeClass::Record(Medications)),
    ("ImplementationGuide", TypeClass::NotPatientData(Conformance)),
    ("InsurancePlan", TypeClass::Record(Financial)),
    ("Invoice", TypeClass::Record(Financial)),
    ("Library", TypeClass::NotPatientData(Knowledge)),
    ("Linkage", TypeClass::Record(Other)),
    ("List", TypeClass::Record(Workflow)),
    ("Location", TypeClass::Record(Entities)),
    ("Measure", TypeClass::NotPatientData(Knowledge)),
    ("MeasureReport", TypeClass::Record(Other)),
    ("Media", TypeClass::Record(Documents)),
    ("Medication", TypeClass::Record(Medications)),
    ("MedicationAdministration", TypeClass::Record(Medications)),
    ("MedicationDispense", TypeClass::Record(Medications)),
    ("MedicationKnowledge", TypeClass::NotPatientData(ProductDefinition)),
    ("MedicationRequest", TypeClass::Record(Medications)),
    ("MedicationStatement", TypeClass::Record(Medications)),
    ("MedicinalProduct", TypeClass::NotPatientData(ProductDefinition)),
    ("MedicinalProductAuthorization", TypeClass::NotPatientData(ProductDefinition)),
    ("MedicinalProductContraindication", TypeClass::NotPatientData(ProductDefinition)),
    ("MedicinalProductIndication", TypeClass::NotPatientData(ProductDefinition)),
    ("MedicinalProductIngredient", TypeClass::NotPatientData(ProductDefinition)),
    ("MedicinalProductInteraction", TypeClass::NotPatientData(ProductDefinition)),
    ("MedicinalProductManufactured", TypeClass::NotPatientData(ProductDefinition)),
    ("MedicinalProductPackaged", TypeClass::NotPatientData(ProductDefinition)),
    ("MedicinalProductPharmaceutical", TypeClass::NotPatientData(ProductDefinition)),
    ("MedicinalProductUndesirableEffect", TypeClass::NotPatientData(ProductDefinition)),
    ("MessageDefinition", TypeClass::NotPatientData(Conformance)),
    ("MessageHeader", TypeClass::NotPatientData(Exchange)),
    ("MolecularSequence", TypeClass::Record(Diagnostics)),
    ("NamingSystem", TypeClass::NotPatientData(Terminology)),
    ("NutritionOrder", TypeClass::Record(CareProvision)),
    ("Observation", TypeClass::Record(Diagnostics)),
    ("ObservationDefinition", TypeClass::NotPatientData(Knowledge)),
    ("OperationDefinition", TypeClass::NotPatientData(Conformance)),
    ("OperationOutcome", TypeClass::NotPatientData(Exchange)),
    ("Organization", TypeClass::Record(Entities)),
    ("OrganizationAffiliation", TypeClass::Record(Entities)),
    ("Parameters", TypeClass::NotPatientData(Exchange)),
    ("Patient", TypeClass::Record(Individuals)),
    ("PaymentNotice", TypeClass::Record(Financial)),
    ("PaymentReconciliation", TypeClass::Record(Financial)),
    ("Person", TypeClass::Record(Individuals)),
    ("PlanDefinition", TypeClass::NotPatientData(Knowledge)),
    ("Practitioner", TypeClass::Record(Individuals)),
    ("PractitionerRole", TypeClass::Record(Individuals)),
    ("Procedure", TypeClass::Record(Clinical)),
    ("Provenance", TypeClass::Record(Security)),
    ("Questionnaire", TypeClass::NotPatientData(Knowledge)),
    ("QuestionnaireResponse", TypeClass::Record(Diagnostics)),
    ("RelatedPerson", TypeClass::Record(Individuals)),
    ("RequestGroup", TypeClass::Record(CareProvision)),
    ("ResearchDefinition", TypeClass::NotPatientData(Knowledge)),
    ("ResearchElementDefinition", TypeClass::NotPatientData(Knowledge)),
    ("ResearchStudy", TypeClass::Record(Other)),
    ("ResearchSubject", TypeClass::Record(Other)),
    ("RiskAssessment", TypeClass::Record(CareProvision)),
    ("RiskEvidenceSynthesis", TypeClass::NotPatientData(Knowledge)),
    ("Schedule", TypeClass::Record(Workflow)),
    ("SearchParameter", TypeClass::NotPatientData(Conformance)),
    ("ServiceRequest", TypeClass::Record(CareProvision)),
    ("Slot", TypeClass::Record(Workflow)),
    ("Specimen", TypeClass::Record(Diagnostics)),
    ("SpecimenDefinition", TypeClass::NotPatientData(Knowledge)),
    ("StructureDefinition", TypeClass::NotPatientData(Conformance)),
    ("StructureMap", TypeClass::NotPatientData(Conformance)),
    ("Subscription", TypeClass::NotPatientData(Exchange)),
    ("Substance", TypeClass::Record(Entities)),
    ("SubstanceNucleicAcid", TypeClass::NotPatientData(ProductDefinition)),
    ("SubstancePolymer", TypeClass::NotPatientData(ProductDefinition)),
    ("SubstanceProtein", TypeClass::NotPatientData(ProductDefinition)),
    ("SubstanceReferenceInformation", TypeClass::NotPatientData(ProductDefinition)),
    ("SubstanceSourceMaterial", TypeClass::NotPatientData(ProductDefinition)),
    ("SubstanceSpecification", TypeClass::NotPatientData(ProductDefinition)),
    ("SupplyDelivery", TypeClass::Record(CareProvision)),
    ("SupplyRequest", TypeClass::Record(CareProvision)),
    ("Task", TypeClass::Record(Workflow)),
    ("TerminologyCapabilities", TypeClass::NotPatientData(Terminology)),
    ("TestReport", TypeClass::NotPatientData(Conformance)),
    ("TestScript", TypeClass::NotPatientData(Conformance)),
    ("ValueSet", TypeClass::NotPatientData(Terminology)),
    ("VerificationResult", TypeClass::Record(Workflow)),
    ("VisionPrescription", TypeClass::Record(CareProvision)),
];

/// How the importer treats `resource_type`; `None` if FHIR R4 has no such
/// type.
pub fn classify(resource_type: &str) -> Option<TypeClass> {
    TYPES.binary_search_by(|(t, _)| (*t).cmp(resource_type)).ok().map(|i| TYPES[i].1)
}

/// Every FHIR R4 resource type that becomes a record.
pub fn record_types() -> impl Iterator<Item = (&'static str, Group)> {
    TYPES.iter().filter_map(|(t, c)| match c {
        TypeClass::Record(g) => Some((*t, *g)),
        _ => None,
    })
}

/// Whether `resource_type` is a FHIR R4 type that becomes a record (what a
/// grant's scope can usefully name).
pub fn is_record_type(resource_type: &str) -> bool {
    matches!(classify(resource_type), Some(TypeClass::Record(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_complete() {
        assert!(TYPES.windows(2).all(|w| w[0].0 < w[1].0), "sorted, unique");
        // FHIR R4 4.0.1 defines 146 concrete resource types (Bundle included).
        assert_eq!(TYPES.len(), 146);
        assert_eq!(classify("Condition"), Some(TypeClass::Record(Group::Clinical)));
        assert_eq!(classify("Claim"), Some(TypeClass::Record(Group::Financial)));
        assert_eq!(classify("ValueSet"), Some(TypeClass::NotPatientData(NotPatientData::Terminology)));
        assert_eq!(classify("Bundle"), Some(TypeClass::Bundle));
        for unknown in ["", "condition", "Invoices", "DomainResource", "Resource", "MedicationUsage"] {
            assert_eq!(classify(unknown), None, "{unknown}");
        }
        assert!(is_record_type("ExplanationOfBenefit") && !is_record_type("Bundle"));
        assert_eq!(record_types().count(), 90);
    }
}
