import { sweep } from './sweep';

sweep(['chinese', 'multilingual']);
