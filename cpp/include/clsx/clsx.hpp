// The clsx C++ library: load what clsx exports, preprocess like clsx does, classify.
#pragma once

#include "clsx/backend.hpp"
#include "clsx/classifier.hpp"
#include "clsx/error.hpp"
#include "clsx/image.hpp"
#include "clsx/metadata.hpp"
#include "clsx/preprocess.hpp"
