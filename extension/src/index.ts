/**
 * flexlab-jupyter: the "Accelerators" panel in JupyterLab's left sidebar.
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import {
  INotebookTracker,
  NotebookActions,
  NotebookPanel
} from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';

import { AcceleratorsPanel } from './panel';

/** The plugin id (also the id of its settings, schema/plugin.json). */
const PLUGIN_ID = 'flexlab-jupyter:plugin';

/** Command ids. */
namespace CommandIDs {
  /** Show the Accelerators panel. */
  export const open = 'flexlab:open';
  /** Add a cell with the given code to the active notebook (args: `code`). */
  export const insertCode = 'flexlab:insert-code';
}

const chipSvg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M9 2h2v3H9zM13 2h2v3h-2zM9 19h2v3H9zM13 19h2v3h-2zM2 9h3v2H2zM2 13h3v2H2zM19 9h3v2h-3zM19 13h3v2h-3z"/>
    <path d="M6 6h12v12H6zm2 2v8h8V8z"/>
    <path d="M10 10h4v4h-4z"/>
  </g>
</svg>`;

/** The sidebar icon: a chip. */
export const acceleratorIcon = new LabIcon({
  name: 'flexlab-jupyter:accelerator',
  svgstr: chipSvg
});

/** Add `code` as a code cell at the end of the active notebook (a new one if none). */
async function insertCode(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  code: string
): Promise<void> {
  let panel: NotebookPanel | null = tracker.currentWidget;
  if (!panel) {
    panel = (await app.commands.execute('notebook:create-new', {
      kernelName: 'python3'
    })) as NotebookPanel;
  }
  await panel.context.ready;
  app.shell.activateById(panel.id);
  const notebook = panel.content;
  const count = notebook.widgets.length;
  const last = count ? notebook.widgets[count - 1] : null;
  const reuse =
    last !== null &&
    last.model.type === 'code' &&
    last.model.sharedModel.getSource().trim() === '';
  notebook.activeCellIndex = Math.max(0, count - 1);
  if (!reuse) {
    NotebookActions.insertBelow(notebook);
  }
  notebook.activeCell?.model.sharedModel.setSource(code);
  notebook.activeCell?.node.scrollIntoView({ block: 'nearest' });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'The Accelerators panel: the flexlab pool, your leases and a request form.',
  autoStart: true,
  // optional so that other frontends loading every labextension (Voila) skip it quietly
  optional: [ILabShell, INotebookTracker, ISettingRegistry, ICommandPalette],
  activate: async (
    app: JupyterFrontEnd,
    labShell: ILabShell | null,
    tracker: INotebookTracker | null,
    registry: ISettingRegistry | null,
    palette: ICommandPalette | null
  ) => {
    if (!labShell || !tracker) {
      return; // not JupyterLab: no sidebar to put the panel in
    }
    const settings = registry ? await registry.load(PLUGIN_ID).catch(() => null) : null;
    const read = () => ({
      refreshInterval: Number(settings?.composite.refreshInterval ?? 3),
      defaultTtl: String(settings?.composite.defaultTTL ?? '1h'),
      schedulerAddress: String(settings?.composite.schedulerAddress ?? '')
    });
    const panel = new AcceleratorsPanel({
      icon: acceleratorIcon,
      ...read(),
      insertCode: code => insertCode(app, tracker, code)
    });
    settings?.changed.connect(() => panel.configure(read()));
    labShell.add(panel, 'left', { rank: 300 });

    app.commands.addCommand(CommandIDs.open, {
      label: 'Show Accelerators',
      icon: acceleratorIcon,
      execute: () => labShell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.insertCode, {
      label: 'Insert flexlab Code in Notebook',
      execute: args => insertCode(app, tracker, String(args.code ?? ''))
    });
    palette?.addItem({ command: CommandIDs.open, category: 'flexlab' });
  }
};

export default plugin;
