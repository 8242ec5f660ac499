"""``environment`` and ``tags`` of ``@sink`` select what a run deploys, as in Chalk (issue 21)."""
import json
import sys
import textwrap

import pytest

import sinks
from pipelines.__main__ import main
from sinks import features, sink
from sinks.selection import select_sinks, tag_matches


@pytest.mark.parametrize("sink_tags, run_tags, runs", [
    # Chalk's table ("When tagged resolvers run")
    (["api"], ["api"], True), (["api"], ["api:live"], True),
    (["api:live", "mock-phone"], ["api:live", "mock-phone"], True),
    (["api:live", "mock-phone"], ["api:live"], False), (["api:live"], ["api"], False),
    (["api:fixture"], ["api:live"], False),
    ([], ["api"], True),
])
def test_tags_match_as_in_chalk(sink_tags, run_tags, runs):
    assert all(tag_matches(tag, run_tags) for tag in sink_tags) is runs


def _sinks():
    @features
    class Item:
        id: str

    @sink(environment="prod")
    def prod_only(iid: Item.id):
        pass

    @sink(environment=["staging", "dev"], tags=["vendor:mock"])
    def staging_mock(iid: Item.id):
        pass

    @sink
    def everywhere(iid: Item.id):
        pass

    return [prod_only, staging_mock, everywhere]


def test_select_by_environment_and_tags():
    every = _sinks()
    names = lambda chosen: [s.spec.name for s in chosen]  # noqa: E731
    assert names(select_sinks(every)) == ["prod_only", "staging_mock", "everywhere"]
    assert names(select_sinks(every, "prod")) == ["prod_only", "everywhere"]
    assert names(select_sinks(every, "dev")) == ["staging_mock", "everywhere"]
    assert names(select_sinks(every, "dev", ["vendor:live"])) == ["everywhere"]
    assert names(select_sinks(every, "dev", ["vendor"])) == ["everywhere"]
    assert names(select_sinks(every, None, ["vendor:mock"])) == ["prod_only", "staging_mock", "everywhere"]
    with pytest.raises(KeyError, match="no sink runs in environment 'qa'.*prod_only: environment prod"):
        select_sinks(every[:2], "qa")


DEFINITIONS = """\
from pathlib import Path
from sinks import features, sink

MARKS = Path({marks!r})

@features
class Item:
    id: str

@sink(environment="prod", machine_type="n2-standard-4", owner="ops@shop.example")
def prod_only(iid: Item.id):
    (MARKS / "prod_only").touch()

@sink(environment="staging", tags=["vendor:mock"])
def staging_mock(iid: Item.id):
    (MARKS / "staging_mock").touch()

@sink
def everywhere(iid: Item.id):
    (MARKS / "everywhere").touch()
"""


@pytest.mark.parametrize("flags, ran", [
    ([], {"prod_only", "staging_mock", "everywhere"}),
    (["--environment", "prod"], {"prod_only", "everywhere"}),
    (["--environment", "staging", "--tag", "vendor:mock"], {"staging_mock", "everywhere"}),
    (["--environment", "staging", "--tag", "vendor:live"], {"everywhere"}),
])
def test_run_deploys_the_selected_sinks(tmp_path, flags, ran):
    marks = tmp_path / "marks"
    marks.mkdir()
    definitions = tmp_path / "deploy_defs.py"
    definitions.write_text(DEFINITIONS.format(marks=str(marks)))
    sys.modules.pop("deploy_defs", None)
    updates = tmp_path / "items.jsonl"
    updates.write_text(json.dumps({"item.id": "i1"}) + "\n")
    assert main(["run", "--definitions", str(definitions), "--input", str(updates),
                 "--dead-letters", str(tmp_path / "letters"), *flags]) == 0
    assert {p.name for p in marks.iterdir()} == ran


def test_explain_shows_environment_tags_and_machine_type(tmp_path, capsys):
    definitions = tmp_path / "deploy_explain_defs.py"
    definitions.write_text(DEFINITIONS.format(marks=str(tmp_path)))
    sys.modules.pop("deploy_explain_defs", None)
    assert main(["explain", "--definitions", str(definitions)]) == 0
    out = capsys.readouterr().out
    assert ("deployed: environment prod; machine_type n2-standard-4 (a hint for runner options); "
            "owner ops@shop.example") in out
    assert "deployed: environment staging; tags vendor:mock" in out
    assert "deployed: every environment, any tags" in out
    assert sinks.load(definitions).sink("prod_only").spec.machine_type == "n2-standard-4"


def test_a_run_that_deploys_nothing_says_why(tmp_path, capsys):
    definitions = tmp_path / "deploy_none_defs.py"
    definitions.write_text(textwrap.dedent(DEFINITIONS.format(marks=str(tmp_path))).replace(
        "@sink\ndef everywhere", "@sink(environment='dev')\ndef everywhere"))
    sys.modules.pop("deploy_none_defs", None)
    updates = tmp_path / "items.jsonl"
    updates.write_text(json.dumps({"item.id": "i1"}) + "\n")
    assert main(["run", "--definitions", str(definitions), "--input", str(updates), "--environment", "qa"]) == 2
    assert "no sink runs in environment 'qa'" in capsys.readouterr().err
