"""Contracts every layer relies on, importing nothing heavy.

errors (ClsxError and friends), optional (lazy imports with the install hint), spec (ModelSpec,
PreprocessSpec and their precedence), metadata (the artifact document), preprocess (the one image ->
tensor implementation), agreement (logit comparisons), files (exclusive atomic publishing of file
sets, sha256), artifact (an artifact's files, resolved inside its folder), progress, machine.
"""
