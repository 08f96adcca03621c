"""The ptychography study: the only code of the runner that knows doses, overlap views, splits,
PtychoPINN's phases and files. The engine reaches it through `STUDY`, behind runner.study.Study.

Read layout.py first (every path and job key), then plan.py and phases.py (the jobs), then
manifests.py and summaries.py (PtychoPINN's files) and report/ (the answer)."""

from runner.ptycho.study import PtychoStudy

STUDY = PtychoStudy()
