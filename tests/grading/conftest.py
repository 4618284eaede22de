"""Each variants module runs its own VARIANTS through test_variant_is_graded_as_expected."""


def pytest_generate_tests(metafunc):
    if metafunc.function.__name__ == "test_variant_is_graded_as_expected":
        cases = [(ex_id, v) for ex_id, vs in getattr(metafunc.module, "VARIANTS", {}).items() for v in vs]
        metafunc.parametrize("exercise_id,variant", cases, ids=[f"{e}:{v.label}" for e, v in cases])
