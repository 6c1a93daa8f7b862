#include "model/model_file.h"
// Placeholder: implementation lands in a following commit.
