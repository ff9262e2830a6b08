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
# The course's style (student/custom.css: the Validate dialog's message in sight), which JupyterLab
# loads when custom_css is on (a jupyter_lab_config.json of the student's own is left as it is).
mkdir -p "$HOME/.jupyter/custom"
cp "$(dirname "$0")/custom.css" "$HOME/.jupyter/custom/custom.css"
[ -e "$HOME/.jupyter/jupyter_lab_config.json" ] || echo '{"LabApp": {"custom_css": true}}' > "$HOME/.jupyter/jupyter_lab_config.json"
for extension in formgrader create-assignment; do
    jupyter labextension disable --level=user "@jupyter/nbgrader:$extension"
done
