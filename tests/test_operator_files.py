"""The operator-editable files in config/: the shipped ones load, wrong ones are named precisely."""

from pathlib import Path

import pytest

from bot.script import Survey
from config.branches import load_branches
from config.errors import ConfigError
from config.files import parse_file
from config.settings import PACKAGE_DIR
from nlp.taxonomy import Taxonomy


def load_survey(path: Path) -> Survey:
    return parse_file(Survey, path)


def load_taxonomy(path: Path) -> Taxonomy:
    return parse_file(Taxonomy, path)


CATEGORY = """
[[categories]]
id = "{id}"
department = "ops"
name = {{ en = "{en}", zh = "{zh}" }}
description = {{ en = "d", zh = "描述" }}
examples = {{ en = ["e"], zh = ["例"] }}
"""
DEPARTMENT = '[[departments]]\nid = "ops"\nname = { en = "Ops", zh = "运营" }\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "file.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_files_load():
    taxonomy = load_taxonomy(PACKAGE_DIR / "taxonomy.toml")
    survey = load_survey(PACKAGE_DIR / "survey.toml")
    branches = load_branches(PACKAGE_DIR / "branches.toml")
    assert {"waiting_time", "staff_attitude", "fees_charges", "card_atm", "digital_banking"} <= {
        c.id for c in taxonomy.categories
    }
    assert all(c.examples.en and c.examples.zh for c in taxonomy.categories)
    assert survey.step(survey.start).type == "yes_no"
    assert branches.branches[0].counters


def test_taxonomy_with_a_duplicate_category_is_rejected(tmp_path):
    text = DEPARTMENT + CATEGORY.format(id="fees", en="Fees", zh="收费") + CATEGORY.format(id="fees", en="F", zh="费")
    with pytest.raises(ConfigError) as err:
        load_taxonomy(write(tmp_path, text))
    assert str(err.value) == f"{tmp_path / 'file.toml'}: duplicate categories: fees"


def test_taxonomy_with_a_duplicate_chinese_name_is_rejected(tmp_path):
    text = DEPARTMENT + CATEGORY.format(id="a", en="A", zh="收费") + CATEGORY.format(id="b", en="B", zh="收费")
    with pytest.raises(ConfigError, match="duplicate categories \\(Chinese name\\): 收费"):
        load_taxonomy(write(tmp_path, text))


def test_category_with_unknown_department_is_rejected(tmp_path):
    text = DEPARTMENT + CATEGORY.format(id="a", en="A", zh="甲").replace('"ops"\nname', '"opz"\nname', 1)
    text = text.replace('department = "ops"', 'department = "opz"')
    with pytest.raises(ConfigError, match="category 'a' names department 'opz'"):
        load_taxonomy(write(tmp_path, text))


def test_category_missing_its_chinese_name_names_the_item(tmp_path):
    text = DEPARTMENT + CATEGORY.format(id="fees", en="Fees", zh="x").replace(', zh = "x"', "")
    with pytest.raises(ConfigError, match=r"key categories\[0\] \(fees\)\.name\.zh: Field required"):
        load_taxonomy(write(tmp_path, text))


def test_category_without_examples_is_rejected(tmp_path):
    text = DEPARTMENT + CATEGORY.format(id="fees", en="Fees", zh="收费").replace('zh = ["例"]', "zh = []")
    with pytest.raises(
        ConfigError,
        match=r"key categories\[0\] \(fees\)\.examples\.zh: Tuple should have at least 1 item after validation, not 0$",
    ):
        load_taxonomy(write(tmp_path, text))
    text = DEPARTMENT + CATEGORY.format(id="fees", en="Fees", zh="收费").replace(
        'examples = { en = ["e"], zh = ["例"] }', ""
    )
    with pytest.raises(ConfigError, match=r"\(fees\)\.examples: Field required"):
        load_taxonomy(write(tmp_path, text))


def test_survey_step_pointing_nowhere_is_rejected(tmp_path):
    text = 'start = "a"\n[[steps]]\nid = "a"\ntype = "yes_no"\ntext = { en = "OK?", zh = "好吗？" }\nnext = "b"\n'
    with pytest.raises(ConfigError, match="step 'a' goes to 'b', which is not a step"):
        load_survey(write(tmp_path, text))


def test_survey_must_start_by_asking_for_consent(tmp_path):
    text = 'start = "a"\n[[steps]]\nid = "a"\ntype = "text"\ntext = { en = "Hi", zh = "你好" }\n'
    with pytest.raises(ConfigError, match="start step 'a' must be a yes_no step: it asks for consent"):
        load_survey(write(tmp_path, text))


def test_rating_step_without_scale_is_rejected(tmp_path):
    text = 'start = "a"\n[[steps]]\nid = "a"\ntype = "rating"\ntext = { en = "Rate", zh = "评分" }\n'
    with pytest.raises(ConfigError, match=r"steps\[0\] \(a\): rating step 'a' needs a scale"):
        load_survey(write(tmp_path, text))


def test_unknown_step_type_is_named(tmp_path):
    text = 'start = "a"\n[[steps]]\nid = "a"\ntype = "essay"\ntext = { en = "x", zh = "x" }\n'
    with pytest.raises(ConfigError, match=r"steps\[0\] \(a\)\.type: Input should be 'choice'"):
        load_survey(write(tmp_path, text))


def test_branch_codes_must_be_unique_and_link_safe(tmp_path):
    dup = '[[branches]]\ncode = "A1"\nname = { en = "A", zh = "甲" }\n' * 2
    with pytest.raises(ConfigError, match="duplicate branch codes: A1"):
        load_branches(write(tmp_path, dup))
    bad = '[[branches]]\ncode = "A 1/x"\nname = { en = "A", zh = "甲" }\n'
    with pytest.raises(ConfigError, match=r"branches\[0\] \(A 1/x\)\.code: String should match pattern"):
        load_branches(write(tmp_path, bad))
