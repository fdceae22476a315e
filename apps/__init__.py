"The astra-wb Gradio workbench (`apps/app.py`, launched by `astra-wb app`)."
