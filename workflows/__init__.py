"""The release saga's workflows. `workflows.registry` lists what the workflows worker registers.

This package module imports nothing on purpose: the workflow sandbox re-imports a workflow's
package for every run, and a package that imported all three workflows made every run of
the smallest one (a tenant lock) load and compile the whole saga.
"""
