"""The run config is validated whole at load (issue 23, class 5: config): every value against its
field's type, unknown keys anywhere refused, each error naming the key, the value and what was expected."""

from __future__ import annotations

import math

import pytest

from fluxmap.config import ConfigError, run_config_from_mapping


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"model": {"min_sites": "5"}}, "config: model: min_sites = '5' (str): expected an integer"),
        ({"model": {"min_sites": 5.5}}, "min_sites = 5.5 (float): expected an integer"),
        ({"model": {"backward_elimination": "false"}}, "backward_elimination = 'false' (str): expected true or false"),
        ({"model": {"min_sites": True}}, "min_sites = True (bool): expected an integer"),
        ({"model": {"k_candidates": [2, "3"]}}, "model: k_candidates[1] = '3' (str): expected an integer"),
        ({"model": {"k_candidates": 3}}, "k_candidates = 3 (int): expected a list of integers"),
        ({"model": {"group_distance_km": "5 km"}}, "group_distance_km = '5 km' (str): expected a number"),
        ({"demo": {"bbox": [-10, 35, 30]}}, "demo: bbox = [-10, 35, 30] (list): expected a list of 4 values"),
        ({"demo": {"years": "2019"}}, "demo: years = '2019' (str): expected a list of integers"),
        ({"demo": "small"}, "config: demo = 'small': expected a mapping"),
        ({"predict": {"zarr_format": "3"}}, "predict: zarr_format = '3' (str): expected an integer"),
        ({"workdir": 7}, "config: workdir = 7 (int): expected a string"),
        ({"model": {"n_trees": 5}}, "config: model: unknown key(s) ['n_trees']"),
        ({"sites": {"sources": [{"kind": "srdb", "path": "x.csv", "option": {}}]}},
         "sites: sources[0]: unknown key(s) ['option']"),
        ({"sites": {"sources": [{"kind": "srdb"}]}}, "sites: sources[0]: missing key(s) ['path']"),
        ({"sites": {"sources": [{"kind": "srdb", "path": 3}]}}, "sources[0]: path = 3 (int): expected a string"),
        ({"sites": {"sources": [{"kind": "srdb", "path": "x", "options": ["a"]}]}}, "options = ['a']: expected a mapping"),
        ({"sites": {"sources": ["srdb.csv"]}}, "sites: sources[0] = 'srdb.csv': expected a mapping"),
        ({"sites": {"sources": [{"kind": "srbd", "path": "x"}]}}, "sources[0]: kind = 'srbd': expected one of"),
        ({"sites": {"sources": [{"kind": "fluxnet", "path": "x", "options": {"site_info": "i", "minqc": 1}}]}},
         "options: unknown key(s) ['minqc'] for kind 'fluxnet'"),
        ({"sites": {"sources": [{"kind": "cosore_daily", "path": "x"}]}}, "kind 'cosore_daily' needs ['summary']"),
        ({"sites": {"sources": [{"kind": "csv", "path": "x", "options": {"mapping": {"site": "s"}}}]}},
         "options: mapping: unknown key(s) ['site']"),
        ({"sites": {"sources": [{"kind": "srdb", "path": "x", "options": {"encoding": "latin-9x"}}]}},
         "sources[0]: options: encoding = 'latin-9x': not a known text encoding"),
        ({"sites": {"sources": [{"kind": "srdb", "path": "x", "options": {"encoding": 1252}}]}},
         "options: encoding = 1252 (int): expected a string"),
        ({"sites": {"plausible": {"co2": [0, 1]}}}, "config: sites: plausible: unknown variable(s) ['co2']; known: ['sr'"),
        ({"sites": {"plausible": {"sr": [0, "40"]}}}, "sites: plausible: sr[1] = '40' (str): expected a number"),
        ({"sites": {"plausible": {"sr": [0, 40, 80]}}}, "sites: plausible: sr = [0, 40, 80] (list): expected a list of 2"),
        ({"sites": {"plausible": {"sr": [40, 0]}}}, "sites: plausible: sr = [40, 0]: expected finite low < high"),
        ({"sites": {"plausible_subdaily": {"nee": [-math.inf, 50]}}}, "plausible_subdaily: nee = [-inf, 50]: expected finite"),
        ({"sites": {"plausible": [0, 40]}}, "sites: plausible = [0, 40]: expected a mapping of variable to [low, high]"),
    ],
)  # fmt: skip
def test_a_wrong_value_is_named_with_what_was_expected(data, message):
    with pytest.raises(ConfigError) as err:
        run_config_from_mapping(data)
    assert message in str(err.value)


def test_valid_values_are_kept_and_normalized():
    cfg = run_config_from_mapping(
        {
            "demo": {"bbox": [-10, 35, 30, 60], "years": [2019, 2020], "resolution": 1},
            "model": {"k_candidates": [2, 3], "group_distance_km": 2, "min_sites": 4, "references": {"sr": "mean"}},
            "cluster": {"kind": "threads"},
        }
    )
    assert cfg.demo is not None and cfg.demo.bbox == (-10.0, 35.0, 30.0, 60.0) and cfg.demo.years == (2019, 2020)
    assert isinstance(cfg.demo.resolution, float) and isinstance(cfg.model.group_distance_km, float)
    assert cfg.model.k_candidates == (2, 3) and cfg.model.references == (("sr", "mean"),)
    assert run_config_from_mapping({"demo": None}).demo is None
    sites = run_config_from_mapping(
        {"sites": {"plausible": {"sr": [0, 35], "nee": [-30, 20]}, "plausible_subdaily": None}}
    ).sites
    assert sites.plausible == (("nee", (-30.0, 20.0)), ("sr", (0.0, 35.0))) and sites.plausible_subdaily == ()
    assert isinstance(sites.plausible[1][1][1], float)
