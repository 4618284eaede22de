# Shortcuts for maintainers; learners only need `python3 course.py lab`.
PY ?= .venv/bin/python
NB ?= chapters/ch1_transformer_math/*.ipynb

.PHONY: setup lab test grade list notebooks solved models bench grade-class bench-class

setup:            ## create .venv and install the course
	python3 course.py setup

lab: setup        ## open JupyterLab on the course index
	python3 course.py lab

test: setup       ## the whole test suite (what CI runs)
	python3 course.py test

grade: setup      ## grade saved notebooks: make grade NB=path/to/notebook.ipynb
	$(PY) -m utils.grade $(NB)

list: setup       ## every exercise and where its reference, grader and notebook live
	$(PY) -m utils.grade --list

notebooks: setup  ## normalise learner notebooks (badge, Colab cell, nbgrader metadata)
	$(PY) -m utils.notebooks sync

solved: setup     ## write solved/ and nbgrader/source/ from chapters/ + solutions/
	$(PY) -m utils.notebooks build

models: setup     ## retrain every shipped model (CPU or GPU, same code)
	$(PY) -m utils.models.train --all && $(PY) -m utils.models.grokking

bench: setup      ## time and peak memory per notebook, check() latency
	$(PY) -m utils.bench

grade-class: setup  ## grade a class: make grade-class CHAPTER=ch2 SUBMISSIONS=nbgrader/submitted
	$(PY) -m utils.cohort $(CHAPTER) $(SUBMISSIONS)

bench-class: setup  ## grade-class against nbgrader autograde, and the 300-learner projection
	$(PY) -m utils.cohort.bench --projection
