"""Fairness: the audited lending game on the FICO data (Hardt et al. 2016; Liu et al. 2018)."""
from deploy_envs.core.registration import env, game, register_topic

register_topic(
    __name__, "fairness",
    env("FairLending-v0", "fair_lending:FairLendingCore", "set per-group lending thresholds on FICO score distributions; scores move +75/-150 with repayment; an auditor reports selection rates, TPRs, DP/EO gaps and delayed impact", test_kwargs={"population_size": 200, "applicants_per_step": 20, "horizon": 8}),
    env("DelayedImpactLending-v0", "delayed_impact:DelayedImpactCore", "ml-fairness-gym's 7-cluster DelayedImpact lending preset (D'Amour et al. 2020): per-group cluster thresholds; each loan's outcome shifts 0.01 of the group's mass a cluster up or down", test_kwargs={"applicants_per_step": 5, "horizon": 8}),
    game("LendingMarket-v0", "lending_market:LendingMarketCore", "a bank sets per-group lending thresholds on FICO data while applicant groups pay group-dependent costs to game their scores and a regulator fines fairness gaps", test_kwargs={"population_size": 200, "rounds": 4}),
)

from deploy_envs.topics.lending import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)
from deploy_envs.topics.lending import delayed_impact_baselines as _delayed_impact_baselines  # noqa: E402,F401  (registers the reference agents)
