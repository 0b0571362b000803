"""The run report's sections after the variant tables, in order: each component renders its
own from summary.json (``section(doc, summary)``, nothing when its stage did not run); the
report only iterates this list."""

from mlbench.analysis.stages import stages_section
from mlbench.datacheck.report import datacheck_section
from mlbench.evaluate.augmentation import report_section as augment_section
from mlbench.evaluate.factors import report_section as factors_section
from mlbench.evaluate.partition import report_section as partition_section
from mlbench.monitor.report import monitor_section
from mlbench.monitor.unlabelled import report_section as unlabelled_section

SECTIONS = [datacheck_section, factors_section, augment_section, monitor_section, unlabelled_section,
            partition_section, stages_section]
