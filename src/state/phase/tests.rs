use super::*;

/// The text forms are the strings that state rows already hold; a change
/// here would make existing rows unreadable.
#[test]
fn phases_and_actions_read_back_the_stored_strings() {
    let stored = [
        "starting",
        "active",
        "completing",
        "completed",
        "rolling_back",
        "rolled_back",
    ];
    for (phase, text) in Phase::ALL.into_iter().zip(stored) {
        assert_eq!(phase.to_string(), text);
        assert_eq!(text.parse::<Phase>(), Ok(phase));
        assert_eq!(
            serde_json::to_value(phase).unwrap(),
            serde_json::json!(text)
        );
    }
    for (action, text) in Action::ALL
        .into_iter()
        .zip(["start", "complete", "rollback"])
    {
        assert_eq!(action.to_string(), text);
        assert_eq!(text.parse::<Action>(), Ok(action));
    }
}

#[test]
fn an_unknown_stored_phase_is_an_error() {
    let err = "rollingback".parse::<Phase>().unwrap_err();
    assert_eq!(err.value, "rollingback");
    assert!(err.to_string().contains("newer pgshift"), "{err}");
    assert!(
        "Active".parse::<Phase>().is_err(),
        "case matters, as stored"
    );
    assert!("restart".parse::<Action>().is_err());
}
