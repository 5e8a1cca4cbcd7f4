//! The equivalent flag sets that crew's and Unleash's engines are measured on, side by side.
//!
//! `fixtures/crew-flags.json` (flagd definitions) and `fixtures/unleash-features.json` (an Unleash
//! client-features document, also Unleash Edge's offline bootstrap file in `scripts/bench-ofrep`) describe the
//! same three flags: `static` (on for everyone; Unleash's `default` strategy), `beta` (a private beta of five
//! users; `userWithId`) and `split` (a 34/33/33 bucket test; `flexibleRollout` at 100% with three variants).

use unleash_yggdrasil::{ClientFeatures, EngineState, UpdateMessage};

pub const CREW_FLAGS: &str = include_str!("../fixtures/crew-flags.json");
pub const UNLEASH_FEATURES: &str = include_str!("../fixtures/unleash-features.json");

/// crew's engine with the fixture flags compiled.
pub fn crew() -> crew_flags::FlagSet {
    let v: serde_json::Value = serde_json::from_str(CREW_FLAGS).expect("crew fixture is JSON");
    crew_flags::FlagSet::from_value(&v).expect("crew fixture is valid")
}

/// yggdrasil with the fixture toggles compiled.
pub fn yggdrasil() -> EngineState {
    let features: ClientFeatures = serde_json::from_str(UNLEASH_FEATURES).expect("unleash fixture parses");
    let engine = EngineState::default();
    if let Some(warnings) = engine.take_state(UpdateMessage::FullResponse(features)) {
        assert!(warnings.is_empty(), "yggdrasil warned: {warnings:?}");
    }
    engine
}
