#!/bin/sh
# A student's setup for the course, as nbgrader's documentation describes it: the course's
# nbgrader_config.py in ~/.jupyter, and the JupyterLab menus of nbgrader's instructor extensions
# (Formgrader, Create Assignment) turned off for this user. EXCHANGE=/path overrides the
# exchange folder. (On a JupyterHub image for students only, `jupyter server extension disable
# --sys-prefix nbgrader.server_extensions.formgrader` also removes the formgrader's pages.)
set -eu
mkdir -p "$HOME/.jupyter"
sed "s|/usr/local/share/nbgrader/exchange|${EXCHANGE:-/usr/local/share/nbgrader/exchange}|" "$(dirname "$0")/nbgrader_config.py" \
    > "$HOME/.jupyter/nbgrader_config.py"
for extension in formgrader create-assignment; do
    jupyter labextension disable --level=user "@jupyter/nbgrader:$extension"
done
