from domainkd.reporting import results_table

METRICS = {
    "questions": 3,
    "in_scope": 2,
    "metrics": {
        "fact_accuracy": {"higher_is_better": True, "description": "d"},
        "false_refusal_rate": {"higher_is_better": False, "description": "d"},
    },
    "systems": {
        "base_student": {"scores": {"fact_accuracy": {"mean": 0.0, "n": 2}, "false_refusal_rate": {"mean": None, "n": 0}}},
        "student": {"scores": {"fact_accuracy": {"mean": 0.5, "n": 2}, "false_refusal_rate": {"mean": 0.125, "n": 2}}},
    },
}


def test_results_table_rows_columns_and_directions():
    assert results_table(METRICS).splitlines() == [
        "| system | fact_accuracy ↑ | false_refusal_rate ↓ |",
        "|---|---:|---:|",
        "| base_student | 0.0 | – |",
        "| student | 50.0 | 12.5 |",
    ]
