// What a Rimba dashboard must be, in Grafana's own types (@grafana/schema 11.3.0, the version deploy/compose.yaml
// runs). tests/test_dashboard_schema.py writes each bundle dashboard as `const d: RimbaDashboard = {...}` and
// type-checks it with tsc --strict: an unknown key (excess property), a null where an object belongs, a wrong enum
// value or a missing required field fails.
import type {
  AnnotationQuery,
  Dashboard,
  DataQuery,
  FieldConfigSource,
  Panel,
} from '@grafana/schema';
import type { Options as StatOptions } from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type {
  FieldConfig as TableFieldConfig,
  Options as TableOptions,
} from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type {
  FieldConfig as TimeSeriesFieldConfig,
  Options as TimeSeriesOptions,
} from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

// JSON has no TypeScript enums: an enum member is written as its value ("background_solid"), so each string enum
// of the schema is taken as the union of its values; everything else stays as the schema says.
type Json<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends Array<infer U>
      ? Array<Json<U>>
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;

// Grafana's InfluxDB query, the fields Rimba uses (public/app/plugins/datasource/influxdb/types.ts, InfluxQuery);
// the plugin is not in @grafana/schema.
interface InfluxQuery extends DataQuery {
  datasource: { type: 'influxdb'; uid: string };
  query: string;
  rawQuery: true;
  resultFormat: 'time_series' | 'table' | 'logs';
  alias?: string;
}

// An annotation's target as the InfluxDB plugin's migration writes it (migrations.ts, migrateLegacyAnnotation);
// its data source is the annotation's.
interface InfluxAnnotationTarget extends Omit<InfluxQuery, 'datasource'> {
  fromAnnotations: true;
  queryType: 'tags';
  textColumn: string;
  tagsColumn: string;
  titleColumn: string;
  timeEndColumn: string;
  limit: number;
  matchAny: boolean;
  tags: string[];
  type: string;
}

// The built-in data source's snapshot query (public/app/plugins/datasource/grafana/types.ts, GrafanaQuery).
interface SnapshotQuery extends DataQuery {
  datasource: { type: 'grafana'; uid: 'grafana' };
  queryType: 'snapshot';
  snapshot: Array<{
    schema: { refId: string; fields: Array<{ name: string; type: 'string' | 'number' }> };
    data: { values: Array<Array<string | number>> };
  }>;
}

type Base = Omit<Panel, 'type' | 'targets' | 'options' | 'fieldConfig'> & {
  targets: Array<InfluxQuery | SnapshotQuery>;
};
type StatPanel = Base & { type: 'stat'; options: StatOptions; fieldConfig: FieldConfigSource };
type TimeSeriesPanel = Base & {
  type: 'timeseries';
  options: TimeSeriesOptions;
  fieldConfig: FieldConfigSource<Partial<TimeSeriesFieldConfig>>;
};
type TablePanel = Base & {
  type: 'table';
  options: TableOptions;
  fieldConfig: FieldConfigSource<Partial<TableFieldConfig>>;
};

export type RimbaDashboard = Json<
  Omit<Dashboard, 'panels' | 'annotations'> & {
    panels: Array<StatPanel | TimeSeriesPanel | TablePanel>;
    annotations: { list?: Array<AnnotationQuery<InfluxAnnotationTarget>> };
  }
>;
