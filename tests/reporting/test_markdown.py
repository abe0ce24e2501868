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


def test_significance_lines_state_the_winners_advantage():
    from domainkd.reporting.markdown import significance_lines

    metrics = {
        **METRICS,
        "comparisons": {
            "fact_accuracy": [{"a": "base_student", "b": "student", "mean_difference": -0.1, "ci_low": -0.183,
                               "ci_high": -0.033, "p_holm": 0.0143, "significant": True, "better": "student"}],
            "false_refusal_rate": [{"a": "base_student", "b": "student", "mean_difference": -0.183, "ci_low": -0.283,
                                    "ci_high": -0.083, "p_holm": 0.0009, "significant": True, "better": "base_student"}],
        },
    }
    assert significance_lines(metrics) == [
        "- **fact_accuracy**: student beats base_student by 10.0 points (95% CI 3.3 to 18.3, p_holm=0.0143).",
        "- **false_refusal_rate**: base_student beats student by 18.3 points (95% CI 8.3 to 28.3, p_holm=0.0009).",
    ]
    metrics["comparisons"]["fact_accuracy"][0]["significant"] = False
    assert significance_lines(metrics)[0] == "- **fact_accuracy**: no significant difference between systems."


def test_retrieval_table_shows_a_dash_when_no_question_had_a_gold_chunk():
    from domainkd.reporting.html import render_html_report
    from domainkd.reporting.markdown import retrieval_table

    empty = {"method": "bm25", "questions": 0, "recall_at": {}, "document_recall_at": {}, "mrr": None}
    found = {"method": "dense", "questions": 2, "recall_at": {"1": 0.5}, "document_recall_at": {"1": 1.0}, "mrr": 0.75}
    lines = retrieval_table({"retrieval": {"bm25": empty, "dense": found}})
    assert "| bm25 | 0 | – | – | – |" in lines and "| dense | 2 | 50.0 | 0.750 | 100.0 |" in lines
    assert "<td class=\"num\">–</td>" in render_html_report("t", "i", {"retrieval": {"bm25": empty}}, {}, {})


def test_reading_table_shows_each_reading_systems_split_and_the_checks_replacements():
    from domainkd.reporting.markdown import reading_table

    reading = {"excerpts_hold_facts": {"mean": 0.625, "n": 8}, "excerpts_miss_facts": {"mean": None, "n": 0},
               "answer_check": {"in_scope": 3, "in_scope_right": 1, "out_of_scope": 5}}
    lines = reading_table({"systems": {"student": {"scores": {}}, "student_with_retrieval": {"scores": {}, "reading": reading}}})
    assert lines[0] == "## Retrieval or reading"
    assert "| student_with_retrieval | 62.5 (n=8) | – | 3 (1) | 5 |" in lines
    assert not any(line.startswith("| student |") for line in lines)  # closed-book: no row
    assert reading_table(METRICS) == []
