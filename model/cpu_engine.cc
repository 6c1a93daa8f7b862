// Placeholder: implementation lands in a following commit.
