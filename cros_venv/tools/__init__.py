"""The maintainer commands: everything behind bin/ other than create_venv.

`commands` (their entry point: error lines, exit codes, the cache held in use), `check`
(bin/check_requirements), `vendor` (bin/vendor_wheels; `pip_run`, the pip it runs and why
that failed), `presubmit` (bin/presubmit) and `targets` (declared Python version x platform
as tags and a marker environment, for check and vendor). They use the core modules in
cros_venv/; nothing in cros_venv/ outside this package, and nothing create_venv runs,
imports anything from here (tests/test_layout.py checks that), so these modules never cost
create_venv an import or a no-op invalidation.
"""
