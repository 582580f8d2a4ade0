"""churnguard: catch container and cloud-instance evasion without paging for benign churn."""

__version__ = "0.1.0"
