//! The SAM template refuses at deploy time what the function would refuse at start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use shared::domain::routing::Schedule;

const TEMPLATE: &str = include_str!("../../../infra/template.yaml");

/// The `AllowedPattern` of a parameter, as written in the template (a double-quoted scalar).
fn allowed_pattern(parameter: &str) -> String {
    let block = TEMPLATE
        .split(&format!("\n  {parameter}:\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no parameter {parameter} in the template"));
    let line = block
        .lines()
        .take_while(|l| l.starts_with("    "))
        .find_map(|l| l.trim().strip_prefix("AllowedPattern: "))
        .unwrap_or_else(|| panic!("{parameter} has no AllowedPattern"));
    line.trim_matches('"').to_owned()
}

#[test]
fn the_schedule_parameter_accepts_exactly_what_the_function_accepts() {
    let pattern = regex_lite::Regex::new(&allowed_pattern("ProvisionedSchedule")).unwrap();
    let cases = [
        "09:00-17:00",
        "22:00-06:00",
        "00:00-00:00",
        "Mon-Fri 09:00-18:00",
        "Sat,Sun 10:00-14:00",
        "Mon-Wed,Fri 08:00-12:30",
        "Fri-Mon 00:00-23:59",
        "9-5",
        "09:00",
        "9:00-17:00",
        "24:00-01:00",
        "25:00-26:00",
        "09:60-10:00",
        "mon-fri 09:00-17:00",
        "Monday 09:00-17:00",
        "Mon-Fri  09:00-17:00",
        "Mon- 09:00-17:00",
        "Mon,,Fri 09:00-17:00",
        ",Mon 09:00-17:00",
        "09:00-17:00 Mon-Fri",
        " 09:00-17:00",
        "Mon-Fri 09:00-17:00 ",
        "",
    ];
    let mut accepted = 0;
    for case in cases {
        let code = case.parse::<Schedule>().is_ok();
        assert_eq!(
            pattern.is_match(case),
            code,
            "{case:?}: the function says {code}"
        );
        accepted += usize::from(code);
    }
    assert_eq!(accepted, 7, "the cases cover both answers");
}
